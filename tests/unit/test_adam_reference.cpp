// Adam and AdamW against torch.optim.Adam / AdamW: 7-step trajectories of two tensors (tests/data/optim.txt,
// written by tests/reference/gen_optim.py), with and without weight decay, L2 and decoupled, amsgrad, and a
// learning rate changed with set_lr mid-way; in double (tight) and float.
#include <gtest/gtest.h>

#include "seqattn/optim/adam.hpp"
#include "support/optim_problem.hpp"

using namespace seqattn;
using seqattn::testing::data_path;
using seqattn::testing::OptimProblem;
using seqattn::testing::ReferenceData;

namespace {

const ReferenceData& reference() {
  static const ReferenceData ref(data_path("optim.txt"));
  return ref;
}

AdamOptions options_of(const std::string& config) {
  const auto& o = reference().values(config + ".options");
  return AdamOptions()
      .lr(o[0])
      .beta1(o[1])
      .beta2(o[2])
      .eps(o[3])
      .weight_decay(o[4])
      .decoupled_weight_decay(o[5] != 0.0)
      .amsgrad(o[6] != 0.0);
}

template <class S>
double adam_error(const std::string& config, double atol, double rtol) {
  OptimProblem<S> problem(reference());
  Adam<S> adam(problem.params(), options_of(config));
  const double err = seqattn::testing::trajectory_error<S>(
      reference(), config, problem, [&](double lr) { adam.set_lr(lr); }, [&] { adam.step(); }, atol, rtol);
  EXPECT_EQ(adam.step_count(), 7);
  return err;
}

class AdamReference : public ::testing::TestWithParam<std::string> {};

TEST_P(AdamReference, MatchesPyTorchInDouble) { EXPECT_LE(adam_error<double>(GetParam(), 1e-13, 1e-12), 1.0); }

TEST_P(AdamReference, MatchesPyTorchInFloat) { EXPECT_LE(adam_error<float>(GetParam(), 2e-6, 2e-6), 1.0); }

INSTANTIATE_TEST_SUITE_P(Configs, AdamReference,
                         ::testing::Values("adam", "adam_l2", "adamw", "adam_custom", "adamw_custom", "adam_amsgrad",
                                           "adamw_amsgrad"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// The comparison can fail: the plain Adam trajectory is not the AdamW one, nor the one with weight decay.
TEST(AdamReference, DistinguishesTheVariants) {
  OptimProblem<double> problem(reference());
  Adam<double> adam(problem.params(), options_of("adam"));
  const double err = seqattn::testing::trajectory_error<double>(
      reference(), "adamw", problem, [&](double lr) { adam.set_lr(lr); }, [&] { adam.step(); }, 1e-13, 1e-12);
  EXPECT_GT(err, 1e3);
}

}  // namespace
