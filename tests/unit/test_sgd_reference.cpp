// SGD against torch.optim.SGD (plain, L2, momentum with dampening, Nesterov; the lr halved with set_lr from
// step 5) and clip_grad_norm against torch.nn.utils.clip_grad_norm_, in double and float
// (tests/data/optim.txt, written by tests/reference/gen_optim.py).
#include <gtest/gtest.h>

#include "seqattn/optim/clip.hpp"
#include "seqattn/optim/sgd.hpp"
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

SGDOptions options_of(const std::string& config) {
  const auto& o = reference().values(config + ".options");
  return SGDOptions().lr(o[0]).momentum(o[1]).dampening(o[2]).nesterov(o[3] != 0.0).weight_decay(o[4]);
}

template <class S>
double sgd_error(const std::string& config, const std::string& reference_config, double atol, double rtol) {
  OptimProblem<S> problem(reference());
  SGD<S> sgd(problem.params(), options_of(config));
  return seqattn::testing::trajectory_error<S>(
      reference(), reference_config, problem, [&](double lr) { sgd.set_lr(lr); }, [&] { sgd.step(); }, atol, rtol);
}

class SGDReference : public ::testing::TestWithParam<std::string> {};

TEST_P(SGDReference, MatchesPyTorchInDouble) {
  EXPECT_LE(sgd_error<double>(GetParam(), GetParam(), 1e-13, 1e-12), 1.0);
}
TEST_P(SGDReference, MatchesPyTorchInFloat) { EXPECT_LE(sgd_error<float>(GetParam(), GetParam(), 2e-6, 2e-6), 1.0); }

INSTANTIATE_TEST_SUITE_P(Configs, SGDReference, ::testing::Values("sgd", "sgd_l2", "sgd_momentum", "sgd_nesterov"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(SGDReference, NesterovDiffersFromPlainMomentum) {
  EXPECT_GT(sgd_error<double>("sgd_momentum", "sgd_nesterov", 1e-13, 1e-12), 1e3);
}

class ClipReference : public ::testing::TestWithParam<std::string> {};

template <class S>
void check_clip(const std::string& tag, double tol) {
  OptimProblem<S> problem(reference());
  problem.set_gradients(1);
  const std::string prefix = "clip_" + tag;
  const S max_norm = static_cast<S>(reference().values(prefix + ".max_norm")[0]);
  const S norm = clip_grad_norm(problem.params(), max_norm);
  EXPECT_NEAR(norm, reference().values(prefix + ".norm")[0], tol);
  const Matrix<S> a = reference().matrix<S>(prefix + ".a");
  const Vector<S> b = reference().matrix<S>(prefix + ".b");
  EXPECT_LE((problem.da - a).cwiseAbs().maxCoeff(), tol);
  EXPECT_LE((problem.db - b).cwiseAbs().maxCoeff(), tol);
  // After clipping the norm is min(norm, max_norm) (up to the 1e-6 guard).
  const double after = std::sqrt(problem.da.squaredNorm() + problem.db.squaredNorm());
  EXPECT_NEAR(after, std::min<double>(norm, max_norm), 1e-5);
}

TEST_P(ClipReference, MatchesPyTorchInDouble) { check_clip<double>(GetParam(), 1e-13); }
TEST_P(ClipReference, MatchesPyTorchInFloat) { check_clip<float>(GetParam(), 2e-6); }

INSTANTIATE_TEST_SUITE_P(MaxNorms, ClipReference, ::testing::Values("small", "one", "large"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(Clip, SkipsBuffersAndRejectsNegativeMaxNorm) {
  Vector<double> w = Vector<double>::Constant(4, 1.0), g = Vector<double>::Constant(4, 3.0);
  Vector<double> stats = Vector<double>::Constant(2, 100.0);
  ParamList<double> params{vector_param<double>("w", w, &g), vector_param<double>("running_mean", stats, nullptr)};
  EXPECT_DOUBLE_EQ(clip_grad_norm(params, 3.0), 6.0);  // the buffer's values do not count
  EXPECT_NEAR(g(0), 3.0 * 3.0 / (6.0 + 1e-6), 1e-15);
  try {
    clip_grad_norm(params, -1.0);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("clip_grad_norm: max_norm must be >= 0 but got -1"), std::string::npos)
        << e.what();
  }
}

}  // namespace
