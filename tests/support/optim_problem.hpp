#pragma once
// The optimizer problem of tests/reference/gen_optim.py: two parameters a (3, 4) and b (5,) starting from the
// reference file's values, and at step k (1-based) the gradient
//     grad[i] = 0.5 * p[i] + sin(1.3 * k + 0.7 * i + offset),   offset 0 for a, 2 for b.
// run_trajectory() steps an optimizer STEPS times (setting the reference learning rate before each step)
// and returns the values after every step, to compare with the PyTorch trajectory in tests/data/optim.txt.

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "seqattn/core/param.hpp"
#include "support/reference_data.hpp"

namespace seqattn::testing {

template <class S>
struct OptimProblem {
  Matrix<S> a, da;
  Vector<S> b, db;

  explicit OptimProblem(const ReferenceData& ref) : a(ref.matrix<S>("init.a")), b(ref.matrix<S>("init.b")) {
    da = Matrix<S>::Zero(a.rows(), a.cols());
    db = Vector<S>::Zero(b.size());
  }
  ParamList<S> params() { return {matrix_param<S>("a", a, &da), vector_param<S>("b", b, &db)}; }

  // Writes the step-k gradients of the current values.
  void set_gradients(int k) {
    fill(a.data(), da.data(), a.size(), k, 0.0);
    fill(b.data(), db.data(), b.size(), k, 2.0);
  }

 private:
  static void fill(const S* p, S* g, Index n, int k, double offset) {
    for (Index i = 0; i < n; ++i)
      g[i] =
          static_cast<S>(0.5 * static_cast<double>(p[i]) + std::sin(1.3 * k + 0.7 * static_cast<double>(i) + offset));
  }
};

// Largest |ours - reference| / (atol + rtol |reference|) over the trajectory of one configuration (<= 1: match).
// `step` runs one optimizer step after the gradients are set; `set_lr` sets the learning rate of the step.
template <class S>
double trajectory_error(const ReferenceData& ref, const std::string& config, OptimProblem<S>& problem,
                        const std::function<void(double)>& set_lr, const std::function<void()>& step, double atol,
                        double rtol) {
  const std::vector<double>& lrs = ref.values(config + ".lrs");
  const std::vector<double>& ta = ref.values(config + ".a");
  const std::vector<double>& tb = ref.values(config + ".b");
  double worst = 0.0;
  for (size_t k = 0; k < lrs.size(); ++k) {
    set_lr(lrs[k]);
    problem.set_gradients(static_cast<int>(k) + 1);
    step();
    auto compare = [&](const S* ours, const std::vector<double>& traj, Index n) {
      for (Index i = 0; i < n; ++i) {
        const double r = traj[k * static_cast<size_t>(n) + static_cast<size_t>(i)];
        worst = std::max(worst, std::abs(static_cast<double>(ours[i]) - r) / (atol + rtol * std::abs(r)));
      }
    };
    compare(problem.a.data(), ta, problem.a.size());
    compare(problem.b.data(), tb, problem.b.size());
  }
  return worst;
}

}  // namespace seqattn::testing
