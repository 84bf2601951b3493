// WarmupCosineSchedule: the learning rates PyTorch's LambdaLR warm-up + CosineAnnealingLR give (tests/data/optim.txt,
// gen_optim.py), the shape (linear warm-up without a 0 step, peak, monotone decay to final_lr, final_lr after the
// end), apply() setting an optimizer's rate, and the option errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "seqattn/optim/adam.hpp"
#include "seqattn/optim/lr_schedule.hpp"
#include "seqattn/optim/sgd.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::data_path;
using seqattn::testing::ReferenceData;

TEST(WarmupCosineSchedule, MatchesPyTorchWarmupAndCosineAnnealing) {
  const ReferenceData ref(data_path("optim.txt"));
  const auto& o = ref.values("schedule_warmup_cosine.options");  // peak, final, warmup, total
  const WarmupCosineSchedule schedule(WarmupCosineOptions()
                                          .peak_lr(o[0])
                                          .final_lr(o[1])
                                          .warmup_steps(static_cast<Index>(o[2]))
                                          .total_steps(static_cast<Index>(o[3])));
  const auto& lrs = ref.values("schedule_warmup_cosine.lrs");
  ASSERT_EQ(lrs.size(), 20u);
  for (size_t k = 0; k < lrs.size(); ++k)
    EXPECT_NEAR(schedule.lr(static_cast<Index>(k)), lrs[k], 1e-15) << "step " << k;
}

TEST(WarmupCosineSchedule, Shape) {
  const WarmupCosineSchedule s(WarmupCosineOptions().peak_lr(1.0).final_lr(0.1).warmup_steps(10).total_steps(110));
  EXPECT_DOUBLE_EQ(s.lr(0), 0.1);  // the first step already moves the weights
  EXPECT_DOUBLE_EQ(s.lr(9), 1.0);
  EXPECT_DOUBLE_EQ(s.lr(10), 1.0);
  EXPECT_NEAR(s.lr(60), 0.55, 1e-12);  // half way through the cosine: the mean of peak and final
  for (Index k = 11; k < 110; ++k) EXPECT_LT(s.lr(k), s.lr(k - 1)) << k;
  EXPECT_DOUBLE_EQ(s.lr(110), 0.1);
  EXPECT_DOUBLE_EQ(s.lr(1000), 0.1);
  EXPECT_DOUBLE_EQ(s.lr(-5), s.lr(0));
  const WarmupCosineSchedule no_warmup(WarmupCosineOptions().peak_lr(2.0).total_steps(4));
  EXPECT_DOUBLE_EQ(no_warmup.lr(0), 2.0);
  EXPECT_NEAR(no_warmup.lr(2), 1.0, 1e-15);
  EXPECT_DOUBLE_EQ(no_warmup.lr(4), 0.0);
}

TEST(WarmupCosineSchedule, ApplySetsTheOptimizersRate) {
  Vector<float> w = Vector<float>::Zero(3), g = Vector<float>::Ones(3);
  Adam<float> adam(ParamList<float>{vector_param<float>("w", w, &g)});
  SGD<float> sgd(ParamList<float>{vector_param<float>("w", w, &g)});
  const WarmupCosineSchedule s(WarmupCosineOptions().peak_lr(0.5).warmup_steps(4).total_steps(8));
  EXPECT_DOUBLE_EQ(s.apply(adam, 1), 0.25);
  EXPECT_DOUBLE_EQ(adam.lr(), 0.25);
  s.apply(sgd, 8);
  EXPECT_DOUBLE_EQ(sgd.lr(), 0.0);
}

TEST(WarmupCosineSchedule, InvalidOptionsNameTheOption) {
  const auto message = [](const WarmupCosineOptions& o) -> std::string {
    try {
      WarmupCosineSchedule s(o);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_NE(message(WarmupCosineOptions().peak_lr(0)).find("expected peak_lr > 0"), std::string::npos);
  EXPECT_NE(message(WarmupCosineOptions().peak_lr(std::nan(""))).find("peak_lr"), std::string::npos);
  EXPECT_NE(message(WarmupCosineOptions().peak_lr(1).final_lr(2)).find("expected final_lr in [0, peak_lr = 1]"),
            std::string::npos);
  EXPECT_NE(message(WarmupCosineOptions().warmup_steps(-1).total_steps(5)).find("expected warmup_steps >= 0 but got -1"),
            std::string::npos);
  EXPECT_EQ(message(WarmupCosineOptions().warmup_steps(5).total_steps(5)),
            "WarmupCosineSchedule: expected total_steps > warmup_steps (5) but got 5");
}
