#pragma once
/// \file
/// Learning-rate schedules: the learning rate of optimizer step k (0-based) as a function of k, applied with the
/// optimizer's set_lr before its step (Adam, SGD and any optimizer with set_lr(double)).
///
/// ```unparsed
///   WarmupCosineSchedule schedule(WarmupCosineOptions().peak_lr(1e-3).warmup_steps(100).total_steps(2000));
///   for (Index k = 0; k < total; ++k) { schedule.apply(adam, k); ...; adam.step(); }
///
/// ```
/// WarmupCosineSchedule (the schedule of BERT, ViT and most transformer recipes):
///
/// ```unparsed
///   k <  warmup_steps:                lr = peak_lr * (k + 1) / warmup_steps          (linear warm-up, no 0 step)
///   warmup_steps <= k < total_steps:  lr = final_lr + (peak_lr - final_lr) * (1 + cos(pi * p)) / 2,
///                                     p = (k - warmup_steps) / (total_steps - warmup_steps)
///   k >= total_steps:                 lr = final_lr
/// ```
/// The cosine part equals torch.optim.lr_scheduler.CosineAnnealingLR(T_max = total_steps - warmup_steps,
/// eta_min = final_lr) at its step p * T_max (tests/unit/test_lr_schedule.cpp compares with values PyTorch
/// printed). Options: peak_lr (1e-3, > 0), final_lr (0, in [0, peak_lr]), warmup_steps (0, >= 0), total_steps
/// (1, > warmup_steps). Invalid options throw ConfigError naming the option and the value.

#include <cmath>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

/// Options of WarmupCosineSchedule (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct WarmupCosineOptions {
  /// The learning rate at the end of the warm-up.
  SEQATTN_ARG(double, peak_lr, 1e-3)
  /// The learning rate from total_steps on.
  SEQATTN_ARG(double, final_lr, 0.0)
  /// Steps of linear warm-up.
  SEQATTN_ARG(Index, warmup_steps, 0)
  /// The step where the cosine decay ends.
  SEQATTN_ARG(Index, total_steps, 1)
};

/// Linear warm-up then cosine decay of the learning rate; see the file documentation.
class WarmupCosineSchedule {
 public:
  /// A schedule with these options (ConfigError for invalid values).
  explicit WarmupCosineSchedule(const WarmupCosineOptions& options = WarmupCosineOptions()) : options_(options) {
    const char* who = "WarmupCosineSchedule";
    if (!(std::isfinite(options.peak_lr()) && options.peak_lr() > 0))
      detail::throw_config(who, ": expected peak_lr > 0 (finite) but got ", options.peak_lr());
    if (!(options.final_lr() >= 0 && options.final_lr() <= options.peak_lr()))
      detail::throw_config(who, ": expected final_lr in [0, peak_lr = ", options.peak_lr(), "] but got ",
                           options.final_lr());
    if (options.warmup_steps() < 0)
      detail::throw_config(who, ": expected warmup_steps >= 0 but got ", options.warmup_steps());
    if (options.total_steps() <= options.warmup_steps())
      detail::throw_config(who, ": expected total_steps > warmup_steps (", options.warmup_steps(), ") but got ",
                           options.total_steps());
  }

  /// The learning rate of step k (0-based; k \< 0 is treated as 0).
  double lr(Index k) const {
    const double peak = options_.peak_lr(), low = options_.final_lr();
    const Index warm = options_.warmup_steps(), total = options_.total_steps();
    if (k < 0) k = 0;
    if (k < warm) return peak * static_cast<double>(k + 1) / static_cast<double>(warm);
    if (k >= total) return low;
    const double p = static_cast<double>(k - warm) / static_cast<double>(total - warm);
    return low + (peak - low) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * p));
  }

  /// Sets optimizer's learning rate to lr(k); returns it.
  template <class Optimizer>
  double apply(Optimizer& optimizer, Index k) const {
    const double value = lr(k);
    optimizer.set_lr(value);
    return value;
  }

  /// The options of the schedule.
  const WarmupCosineOptions& options() const { return options_; }

 private:
  WarmupCosineOptions options_;
};

}  // namespace seqattn
