// The demo model (stories260K, trained, MIT) against llama2.c itself:
// - `import-llama2c` reproduces the committed (embedded) files byte for byte;
// - greedy decoding from the empty prompt prints llama2.c's expected outputs byte for byte, on
//   every CPU kernel table;
// - greedy continuations of other prompts equal those of a straight port of llama2.c's run.c
//   forward() below (original weights, interleaved RoPE, plain softmax), token for token.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "models/demo/demo.h"
#include "models/engine.h"
#include "models/llama2c.h"
#include "models/text_stream.h"
#include "models/tokenizer/tokenizer.h"
#include "tensor/mapped_file.h"

namespace pensieve {
namespace {

const std::string kData = PENSIEVE_TEST_DATA;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(DemoModel, ImportReproducesEmbeddedFiles) {
  std::string out = ::testing::TempDir() + "/demo-import-" + std::to_string(getpid());
  Status st = import_llama2c(kData + "/stories260K/stories260K.bin", kData + "/stories260K/tok512.bin", out);
  ASSERT_TRUE(st.ok()) << st.error();
  auto dir = extract_demo_model();
  ASSERT_TRUE(dir.ok()) << dir.error();
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
    EXPECT_EQ(slurp(out + "/" + f), slurp(*dir + "/" + f)) << f;
  EXPECT_FALSE(import_llama2c(kData + "/stories260K/stories260K.bin", kData + "/stories260K/tok512.bin", out).ok())
      << "an existing output directory is an error";
}

TEST(DemoModel, ImportRejectsBadCheckpoints) {
  std::string dir = ::testing::TempDir() + "/demo-bad-" + std::to_string(getpid());
  std::string ckpt = slurp(kData + "/stories260K/stories260K.bin");
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir + name, std::ios::binary) << bytes;
    return dir + name;
  };
  std::string tok = kData + "/stories260K/tok512.bin";
  EXPECT_FALSE(import_llama2c(write(".trunc", ckpt.substr(0, ckpt.size() - 100)), tok, dir + ".o1").ok());
  EXPECT_FALSE(import_llama2c(write(".short", ckpt.substr(0, 10)), tok, dir + ".o2").ok());
  std::string lying = ckpt;
  int32_t huge = 1 << 20;
  std::memcpy(&lying[0], &huge, 4);  // dim
  EXPECT_FALSE(import_llama2c(write(".lying", lying), tok, dir + ".o3").ok());
  EXPECT_FALSE(import_llama2c(kData + "/stories260K/stories260K.bin", write(".tok", "xx"), dir + ".o4").ok());
}

// llama2.c run.c, ported as is (f32, one token at a time, full-length caches).
class Llama2cReference {
 public:
  explicit Llama2cReference(const std::string& path) {
    auto f = MappedFile::open(path);
    EXPECT_TRUE(f.ok());
    file_ = std::move(*f);
    std::memcpy(&p_, file_.data(), sizeof(p_));
    shared_ = p_.vocab > 0;
    p_.vocab = std::abs(p_.vocab);
    const float* ptr = reinterpret_cast<const float*>(file_.data() + sizeof(p_));
    int head = p_.dim / p_.n_heads;
    int64_t L = p_.n_layers, dim = p_.dim, kv = int64_t(p_.dim) * p_.n_kv_heads / p_.n_heads, hid = p_.hidden;
    auto take = [&](int64_t n) { const float* r = ptr; ptr += n; return r; };
    emb_ = take(p_.vocab * dim);
    rms_att_ = take(L * dim);
    wq_ = take(L * dim * dim);
    wk_ = take(L * dim * kv);
    wv_ = take(L * dim * kv);
    wo_ = take(L * dim * dim);
    rms_ffn_ = take(L * dim);
    w1_ = take(L * dim * hid);
    w2_ = take(L * hid * dim);
    w3_ = take(L * dim * hid);
    rms_final_ = take(dim);
    ptr += int64_t(p_.seq_len) * head;  // freq_cis
    wcls_ = shared_ ? emb_ : ptr;
    x_.resize(size_t(dim)); xb_.resize(size_t(dim)); xb2_.resize(size_t(dim));
    hb_.resize(size_t(hid)); hb2_.resize(size_t(hid)); q_.resize(size_t(dim));
    kc_.assign(size_t(L * p_.seq_len * kv), 0); vc_.assign(size_t(L * p_.seq_len * kv), 0);
    att_.resize(size_t(p_.n_heads * p_.seq_len)); logits_.resize(size_t(p_.vocab));
  }
  int vocab() const { return p_.vocab; }

  const float* forward(int token, int pos) {
    int dim = p_.dim, kv_dim = p_.dim * p_.n_kv_heads / p_.n_heads, kv_mul = p_.n_heads / p_.n_kv_heads;
    int hidden = p_.hidden, head_size = dim / p_.n_heads;
    float* x = x_.data();
    std::memcpy(x, emb_ + int64_t(token) * dim, size_t(dim) * 4);
    for (int64_t l = 0; l < p_.n_layers; l++) {
      rmsnorm(xb_.data(), x, rms_att_ + l * dim, dim);
      int64_t loff = l * p_.seq_len * kv_dim;
      float* k = kc_.data() + loff + int64_t(pos) * kv_dim;
      float* v = vc_.data() + loff + int64_t(pos) * kv_dim;
      matmul(q_.data(), xb_.data(), wq_ + l * dim * dim, dim, dim);
      matmul(k, xb_.data(), wk_ + l * dim * kv_dim, dim, kv_dim);
      matmul(v, xb_.data(), wv_ + l * dim * kv_dim, dim, kv_dim);
      for (int i = 0; i < dim; i += 2) {
        int head_dim = i % head_size;
        float freq = 1.0f / powf(10000.0f, float(head_dim) / float(head_size));
        float val = float(pos) * freq;
        float fcr = cosf(val), fci = sinf(val);
        int rotn = i < kv_dim ? 2 : 1;
        for (int r = 0; r < rotn; r++) {
          float* vec = r == 0 ? q_.data() : k;
          float v0 = vec[i], v1 = vec[i + 1];
          vec[i] = v0 * fcr - v1 * fci;
          vec[i + 1] = v0 * fci + v1 * fcr;
        }
      }
      for (int h = 0; h < p_.n_heads; h++) {
        float* q = q_.data() + h * head_size;
        float* att = att_.data() + int64_t(h) * p_.seq_len;
        for (int t = 0; t <= pos; t++) {
          const float* kt = kc_.data() + loff + int64_t(t) * kv_dim + (h / kv_mul) * head_size;
          float score = 0.0f;
          for (int i = 0; i < head_size; i++) score += q[i] * kt[i];
          att[t] = score / sqrtf(float(head_size));
        }
        softmax(att, pos + 1);
        float* xb = xb_.data() + h * head_size;
        std::memset(xb, 0, size_t(head_size) * 4);
        for (int t = 0; t <= pos; t++) {
          const float* vt = vc_.data() + loff + int64_t(t) * kv_dim + (h / kv_mul) * head_size;
          for (int i = 0; i < head_size; i++) xb[i] += att[t] * vt[i];
        }
      }
      matmul(xb2_.data(), xb_.data(), wo_ + l * dim * dim, dim, dim);
      for (int i = 0; i < dim; i++) x[i] += xb2_[size_t(i)];
      rmsnorm(xb_.data(), x, rms_ffn_ + l * dim, dim);
      matmul(hb_.data(), xb_.data(), w1_ + l * dim * hidden, dim, hidden);
      matmul(hb2_.data(), xb_.data(), w3_ + l * dim * hidden, dim, hidden);
      for (int i = 0; i < hidden; i++) {
        float val = hb_[size_t(i)];
        val *= (1.0f / (1.0f + expf(-val)));
        hb_[size_t(i)] = val * hb2_[size_t(i)];
      }
      matmul(xb_.data(), hb_.data(), w2_ + l * dim * hidden, hidden, dim);
      for (int i = 0; i < dim; i++) x[i] += xb_[size_t(i)];
    }
    rmsnorm(x, x, rms_final_, dim);
    matmul(logits_.data(), x, wcls_, dim, p_.vocab);
    return logits_.data();
  }

 private:
  static void rmsnorm(float* o, const float* x, const float* w, int size) {
    float ss = 0.0f;
    for (int j = 0; j < size; j++) ss += x[j] * x[j];
    ss /= float(size);
    ss += 1e-5f;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < size; j++) o[j] = w[j] * (ss * x[j]);
  }
  static void softmax(float* x, int size) {
    float max_val = x[0];
    for (int i = 1; i < size; i++) max_val = std::max(max_val, x[i]);
    float sum = 0.0f;
    for (int i = 0; i < size; i++) {
      x[i] = expf(x[i] - max_val);
      sum += x[i];
    }
    for (int i = 0; i < size; i++) x[i] /= sum;
  }
  static void matmul(float* xout, const float* x, const float* w, int n, int d) {
    for (int i = 0; i < d; i++) {
      float val = 0.0f;
      for (int j = 0; j < n; j++) val += w[int64_t(i) * n + j] * x[j];
      xout[i] = val;
    }
  }

  struct { int32_t dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len; } p_;
  bool shared_ = true;
  MappedFile file_;
  const float *emb_, *rms_att_, *wq_, *wk_, *wv_, *wo_, *rms_ffn_, *w1_, *w2_, *w3_, *rms_final_, *wcls_;
  std::vector<float> x_, xb_, xb2_, hb_, hb2_, q_, kc_, vc_, att_, logits_;
};

// Greedy tokens from our engine for `prompt` ids, stopping at BOS like llama2.c.
std::vector<int32_t> generate(Model& m, const std::vector<int32_t>& prompt, int64_t n) {
  Engine e(m, {});
  std::vector<int32_t> out;
  bool done = false;
  Request r;
  r.prompt = prompt;
  r.max_tokens = n;
  r.sampling.temperature = 0;
  r.stop_ids = {1};
  r.on_token = [&](int32_t t) { out.push_back(t); return true; };
  r.on_finish = [&](const Finish&) { done = true; };
  EXPECT_TRUE(e.submit(std::move(r)).ok());
  while (!done) e.step();
  return out;
}

std::unique_ptr<Model> load_demo(const std::string& kernels) {
  auto dir = extract_demo_model();
  EXPECT_TRUE(dir.ok());
  ModelOptions o;
  o.kernels = kernels;
  o.threads = 2;
  auto m = Model::load(*dir, o);
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error());
  return std::move(*m);
}

TEST(DemoModel, GreedyPrintsLlama2cExpectedOutputOnEveryKernelTable) {
  auto dir = extract_demo_model();
  ASSERT_TRUE(dir.ok());
  auto tok = Tokenizer::load(*dir);
  ASSERT_TRUE(tok.ok()) << tok.error();
  const CpuKernels* tables[8];
  int n = cpu_kernel_tables(tables, 8);
  for (int i = 0; i < n; ++i) {
    auto m = load_demo(tables[i]->name);
    for (int steps : {200, 256}) {
      auto prompt = tok->encode("");
      ASSERT_TRUE(prompt.ok());
      ASSERT_EQ(*prompt, std::vector<int32_t>{1});
      // llama2.c's -n N samples at each of N positions, the BOS position included: N tokens.
      std::vector<int32_t> ids = generate(*m, *prompt, steps);
      TextStream text(*tok, {});
      std::string s;
      for (int32_t t : ids) s += text.push(t);
      s += text.finish() + "\n";
      EXPECT_EQ(s, slurp(kData + "/stories260K/expected_greedy_n" + std::to_string(steps) + ".txt"))
          << tables[i]->name << " n" << steps;
    }
  }
}

TEST(DemoModel, GreedyMatchesLlama2cForwardOnOtherPrompts) {
  Llama2cReference ref(kData + "/stories260K/stories260K.bin");
  auto dir = extract_demo_model();
  ASSERT_TRUE(dir.ok());
  auto tok = Tokenizer::load(*dir);
  ASSERT_TRUE(tok.ok());
  auto m = load_demo("");
  for (const char* text : {"Once upon a time", "The little dog", "Lily and Tom went to the", "A", "Sue was sad because"}) {
    auto prompt = tok->encode(text);
    ASSERT_TRUE(prompt.ok());
    const int steps = 120;
    // llama2.c: feed the prompt token by token, then argmax until BOS or the step limit.
    std::vector<int32_t> expect;
    int token = (*prompt)[0];
    for (int pos = 0; pos < steps; ++pos) {
      const float* logits = ref.forward(token, pos);
      int next;
      if (pos < int(prompt->size()) - 1) {
        next = (*prompt)[size_t(pos) + 1];
      } else {
        next = int(std::max_element(logits, logits + ref.vocab()) - logits);
        if (next == 1) break;
        expect.push_back(next);
      }
      token = next;
    }
    EXPECT_GT(expect.size(), 60u) << "the reference should write a real continuation";
    std::vector<int32_t> got = generate(*m, *prompt, int64_t(expect.size()));
    EXPECT_EQ(got, expect) << "prompt \"" << text << "\"";
  }
}

}  // namespace
}  // namespace pensieve
