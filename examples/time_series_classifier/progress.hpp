#pragma once
// A progress bar for training epochs: steps done, running loss and accuracy, sequences per second, time left.
//
//   ProgressBar bar(std::cout, stdout_is_terminal());
//   bar.start("epoch 3/10", steps);                    // once per epoch
//   bar.update(step, sequences, loss, accuracy);       // after every step (cheap: redraws at most 10 times/s)
//   bar.finish();                                      // end of the epoch
//
// Terminal mode redraws one line in place (at most every 0.1 s) ('\r', then ESC[K to clear the rest):
//   epoch 3/10 [=========>          ] 45/100  loss 0.4321  acc 0.875  1234 seq/s  ETA 0:12
// Plain mode (output is a file or a pipe) never uses '\r' or escape codes: it writes one line per epoch at
// finish(), plus a line every `plain_interval` seconds during long epochs:
//   epoch 3/10  45/100 steps  loss 0.4321  acc 0.875  1234 seq/s  0:12 left
//   epoch 3/10  100/100 steps  loss 0.4012  acc 0.884  1250 seq/s  0:20 total
// The clock is injectable (seconds as a double) so tests get exact rates and times.

#include <chrono>
#include <cstdio>
#include <functional>
#include <ostream>
#include <string>
#include <utility>

#include <seqattn/core/config.hpp>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace tsc {

// True when standard output is a terminal (isatty), false for files and pipes.
inline bool stdout_is_terminal() {
#if defined(__unix__) || defined(__APPLE__)
  return isatty(STDOUT_FILENO) == 1;
#else
  return false;
#endif
}

inline double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// 75 -> "1:15", 3725 -> "1:02:05"; negative or not finite -> "?".
inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e9) return "?";
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof(buf), "%ld:%02ld", s / 60, s % 60);
  return buf;
}

class ProgressBar {
 public:
  using Index = seqattn::Index;

  ProgressBar(std::ostream& out, bool interactive, std::function<double()> clock = steady_seconds,
              double plain_interval = 30.0, int width = 24)
      : out_(out), interactive_(interactive), clock_(std::move(clock)), plain_interval_(plain_interval), width_(width) {}

  void start(std::string label, Index total_steps) {
    label_ = std::move(label);
    total_ = total_steps;
    done_ = sequences_ = 0;
    loss_ = accuracy_ = 0;
    start_time_ = last_draw_ = clock_();
  }

  // steps_done of total_steps, sequences seen so far this epoch, running mean loss and accuracy.
  void update(Index steps_done, Index sequences, double loss, double accuracy) {
    done_ = steps_done;
    sequences_ = sequences;
    loss_ = loss;
    accuracy_ = accuracy;
    const double now = clock_();
    if (interactive_) {
      if (now - last_draw_ >= 0.1 && done_ < total_) {  // finish() draws the final state
        out_ << '\r' << bar_line(now) << "\x1b[K" << std::flush;
        last_draw_ = now;
      }
    } else if (plain_interval_ > 0 && now - last_draw_ >= plain_interval_ && done_ < total_) {
      out_ << plain_line(now, false) << '\n' << std::flush;
      last_draw_ = now;
    }
  }

  void finish() {
    const double now = clock_();
    if (interactive_)
      out_ << '\r' << bar_line(now) << "\x1b[K\n" << std::flush;
    else
      out_ << plain_line(now, true) << '\n' << std::flush;
  }

  // A line of its own after a finished epoch (e.g. its validation result).
  void note(const std::string& line) { out_ << line << '\n' << std::flush; }

  double elapsed() const { return clock_() - start_time_; }
  bool interactive() const { return interactive_; }

  // The terminal line at time `now`.
  std::string bar_line(double now) const {
    const Index filled = total_ > 0 ? done_ * width_ / total_ : 0;
    std::string bar(static_cast<size_t>(width_), ' ');
    for (Index i = 0; i < filled; ++i) bar[static_cast<size_t>(i)] = '=';
    if (filled < width_ && done_ > 0) bar[static_cast<size_t>(filled)] = '>';
    const double dt = now - start_time_;
    const double left = done_ > 0 ? dt * static_cast<double>(total_ - done_) / static_cast<double>(done_) : -1;
    return label_ + " [" + bar + "] " + std::to_string(done_) + "/" + std::to_string(total_) + stats(dt) +
           "  ETA " + format_duration(left);
  }

  // The plain line at time `now`: the epoch total when final, else the time left.
  std::string plain_line(double now, bool final) const {
    const double dt = now - start_time_;
    const double left = done_ > 0 ? dt * static_cast<double>(total_ - done_) / static_cast<double>(done_) : -1;
    return label_ + "  " + std::to_string(done_) + "/" + std::to_string(total_) + " steps" + stats(dt) + "  " +
           (final ? format_duration(dt) + " total" : format_duration(left) + " left");
  }

 private:
  std::string stats(double dt) const {
    char buf[96];
    const double rate = dt > 0 ? static_cast<double>(sequences_) / dt : 0.0;
    std::snprintf(buf, sizeof(buf), "  loss %.4f  acc %.3f  %.0f seq/s", loss_, accuracy_, rate);
    return buf;
  }

  std::ostream& out_;
  bool interactive_;
  std::function<double()> clock_;
  double plain_interval_;
  Index width_;
  std::string label_;
  Index total_ = 0, done_ = 0, sequences_ = 0;
  double loss_ = 0, accuracy_ = 0, start_time_ = 0, last_draw_ = 0;
};

}  // namespace tsc
