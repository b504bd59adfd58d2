#include "models/store/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>

namespace pensieve {

std::string format_bytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", (unsigned long long)bytes);
  else std::snprintf(buf, sizeof buf, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, kUnits[u]);
  return buf;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = std::lround(seconds);
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%lds", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  return buf;
}

TerminalProgress::TerminalProgress(FILE* out) : TerminalProgress(out, isatty(fileno(out)) != 0) {}

TerminalProgress::TerminalProgress(FILE* out, bool tty, double plain_interval_s)
    : out_(out), tty_(tty), plain_interval_s_(plain_interval_s) {}

void TerminalProgress::begin(const std::string& title, uint64_t total, int n_items, uint64_t already) {
  title_ = title;
  total_ = total;
  n_items_ = n_items;
  item_index_ = 0;
  already_ = done_items_bytes_ = already;
  moved_ = 0;
  start_ = last_draw_ = Clock::now();
}

void TerminalProgress::begin_item(const std::string& name, uint64_t size, uint64_t done) {
  item_ = name;
  item_size_ = size;
  item_done_ = item_start_ = done;
  item_started_ = Clock::now();
  ++item_index_;
  if (done > 0) note(name + ": resuming at " + format_bytes(done));
  draw(true);
}

void TerminalProgress::item_progress(uint64_t done) {
  if (done > item_done_) moved_ += done - item_done_;
  item_done_ = done;
  draw(false);
}

void TerminalProgress::end_item(bool ok) {
  clear_line();
  double secs = std::chrono::duration<double>(Clock::now() - item_started_).count();
  if (ok)
    std::fprintf(out_, "%s: %s %s (%s)\n", title_.c_str(), item_.c_str(), format_bytes(item_done_).c_str(),
                 format_duration(secs).c_str());
  else
    std::fprintf(out_, "%s: %s failed\n", title_.c_str(), item_.c_str());
  done_items_bytes_ += ok ? item_size_ : item_done_;
  item_size_ = item_done_ = 0;
  item_.clear();
  std::fflush(out_);
}

void TerminalProgress::note(const std::string& line) {
  clear_line();
  std::fprintf(out_, "%s: %s\n", title_.c_str(), line.c_str());
  std::fflush(out_);
}

void TerminalProgress::end(bool ok) {
  clear_line();
  std::fflush(out_);
}

double TerminalProgress::speed() const {
  double secs = std::chrono::duration<double>(Clock::now() - start_).count();
  return secs > 0.2 ? double(moved_) / secs : 0;
}

std::string TerminalProgress::status_line(bool with_bar) const {
  char buf[512];
  std::string s;
  if (n_items_ > 1) {
    std::snprintf(buf, sizeof buf, "[%d/%d] ", item_index_, n_items_);
    s += buf;
  }
  std::string name = item_.size() > 32 ? "..." + item_.substr(item_.size() - 29) : item_;
  double pct = item_size_ ? 100.0 * double(item_done_) / double(item_size_) : 100.0;
  std::snprintf(buf, sizeof buf, "%s %3.0f%% ", name.c_str(), pct);
  s += buf;
  if (with_bar) {
    const int width = 20;
    int filled = int(pct / 100.0 * width + 0.5);
    s += '[' + std::string(size_t(filled), '#') + std::string(size_t(width - filled), '.') + "] ";
  }
  s += format_bytes(item_done_) + "/" + format_bytes(item_size_);
  uint64_t done = done_items_bytes_ + item_done_;
  if (n_items_ > 1) {
    double tpct = total_ ? 100.0 * double(done) / double(total_) : 100.0;
    std::snprintf(buf, sizeof buf, " | total %.0f%% %s/%s", tpct, format_bytes(done).c_str(), format_bytes(total_).c_str());
    s += buf;
  }
  double sp = speed();
  if (sp > 0) {
    s += " | " + format_bytes(uint64_t(sp)) + "/s";
    s += " | ETA " + format_duration(double(total_ > done ? total_ - done : 0) / sp);
  }
  return s;
}

void TerminalProgress::clear_line() {
  if (tty_ && line_dirty_) std::fputs("\r\x1b[2K", out_);
  line_dirty_ = false;
}

void TerminalProgress::draw(bool force) {
  auto now = Clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (tty_) {
    if (!force && since < 0.1) return;  // 10 redraws a second are plenty
    std::string line = status_line(true);
    struct winsize ws {};
    size_t cols = ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 100;
    if (line.size() >= cols) line = status_line(false);
    if (line.size() >= cols) line.resize(cols - 1);
    std::fprintf(out_, "\r\x1b[2K%s", line.c_str());
    line_dirty_ = true;
  } else {
    if (since < plain_interval_s_) return;
    std::fprintf(out_, "%s: %s\n", title_.c_str(), status_line(false).c_str());
  }
  std::fflush(out_);
  last_draw_ = now;
}

}  // namespace pensieve
