// Progress reporting for long jobs (downloads, quantizing). Library code reports to a
// ProgressReporter; the CLI passes a TerminalProgress, tests pass nothing or a recorder.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace pensieve {

class ProgressReporter {
 public:
  virtual ~ProgressReporter() = default;
  // A job of `total` bytes over `n_items` items (files); `already` of them are done (cached/resumed).
  virtual void begin(const std::string& title, uint64_t total, int n_items, uint64_t already) {}
  // An item of `size` bytes, `done` of which are already there (a resumed download).
  virtual void begin_item(const std::string& name, uint64_t size, uint64_t done) {}
  // Bytes of the current item done so far (absolute: a restarted download goes back).
  virtual void item_progress(uint64_t done) {}
  virtual void end_item(bool ok) {}
  // A line of text (retries, resumes, skipped files).
  virtual void note(const std::string& line) {}
  virtual void end(bool ok) {}
};

// "1.23 GB", "512 kB", "17 B" (decimal units, as the hub and tqdm show sizes).
std::string format_bytes(uint64_t bytes);
// "38s", "4m12s", "2h05m".
std::string format_duration(double seconds);

// Renders progress on a terminal: on a TTY one line redrawn in place (current item with its bar,
// then the total, speed and ETA), a finished line kept per item; elsewhere (logs, pipes) a plain
// line every `plain_interval_s` seconds and one per finished item.
class TerminalProgress : public ProgressReporter {
 public:
  explicit TerminalProgress(FILE* out = stderr);
  TerminalProgress(FILE* out, bool tty, double plain_interval_s = 10.0);

  void begin(const std::string& title, uint64_t total, int n_items, uint64_t already) override;
  void begin_item(const std::string& name, uint64_t size, uint64_t done) override;
  void item_progress(uint64_t done) override;
  void end_item(bool ok) override;
  void note(const std::string& line) override;
  void end(bool ok) override;

 private:
  using Clock = std::chrono::steady_clock;
  void draw(bool force);
  std::string status_line(bool with_bar) const;
  void clear_line();
  double speed() const;  // bytes/s moved in this job (not counting cached or resumed bytes)

  FILE* out_;
  bool tty_;
  double plain_interval_s_;
  std::string title_, item_;
  uint64_t total_ = 0, done_items_bytes_ = 0, already_ = 0;
  uint64_t item_size_ = 0, item_done_ = 0, item_start_ = 0;
  uint64_t moved_ = 0;  // bytes transferred in this job
  int n_items_ = 0, item_index_ = 0;
  Clock::time_point start_, item_started_, last_draw_;
  bool line_dirty_ = false;
};

}  // namespace pensieve
