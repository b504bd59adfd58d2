// Replays the fuzz corpus through the parser in a normal build: every file must parse or be
// rejected with an error, never crash (ASan/UBSan builds catch more).
#include <dirent.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  DIR* d = opendir(argv[1]);
  if (!d) {
    std::fprintf(stderr, "cannot open %s\n", argv[1]);
    return 2;
  }
  int n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(std::string(argv[1]) + "/" + e->d_name, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string bytes = ss.str();
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++n;
  }
  closedir(d);
  std::printf("replayed %d corpus files\n", n);
  return n > 0 ? 0 : 1;
}
