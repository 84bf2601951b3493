// Properties of saving, loading and copying random models (tests/support/random_model.hpp), kModels models:
// after a few Adam steps in Mode::Train (so BatchNorm running statistics and every weight have moved), the
// model is saved with save_weights, loaded into a model of the same architecture built with other weights,
// and the load is exact: every parameter and buffer has the same bits, and predictions are bitwise equal.
// A copy (Sequential's deep copy) predicts the same bits and shares nothing: training the copy leaves the
// original's weights unchanged. Restoring a checkpoint by assignment (`best = model; train; model = best`) keeps
// the optimizer's views valid, restores every value bitwise, and the next Train forward equals a fresh copy's
// (same dropout streams); assigning a model of another architecture makes the optimizer refuse.
// Model files (io/model_file.hpp): a trained random model saved with save_model and rebuilt by load_model<float>
// from the file alone has the same architecture entry, describe(), summary(), parameter and buffer bits, and
// predicts bitwise the same (padded outputs too); load_model<double> of the same file gives the double model of
// the same values (every value converted exactly), whose predictions agree to float precision.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "seqattn/io/model_file.hpp"
#include "seqattn/io/weights.hpp"
#include "seqattn/loss/mean_squared_error.hpp"
#include "seqattn/optim/adam.hpp"
#include "support/property_checks.hpp"
#include "support/property_stride.hpp"
#include "support/random_model.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

constexpr int kModels = 100;

std::vector<float> all_values(Sequential<float>& model) {
  std::vector<float> out;
  for (const auto& list : {model.params(), model.buffers()})
    for (const auto& p : list) out.insert(out.end(), p.value, p.value + p.size());
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void train(Sequential<float>& model, const Tensor3<float>& x, const Mask& mask, int steps) {
  if (model.params().empty()) {
    model.forward(x, mask, Mode::Train);
    return;
  }
  Adam<float> adam(model.params(), AdamOptions().lr(0.01));
  MeanSquaredError<float> loss;
  for (int k = 0; k < steps; ++k) {
    const Tensor3<float>& y = model.forward(x, mask, Mode::Train);
    Tensor3<float> target(y.dimension(0), y.dimension(1), y.dimension(2));
    target.setConstant(0.5f);
    loss.forward(y, target, model.output_mask());
    adam.zero_grad();
    model.backward(loss.grad());
    adam.step();
  }
}

TEST(PropertyIo, SaveAndLoadOfRandomModelsIsExact) {
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 5, B = 4;
    const std::uint64_t structure = 20000 + seed;
    RandomModel<float> m = random_model<float>(structure, RandomModelOptions().steps(T).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << structure << ":" << m.recipe);
    const std::vector<Index> lengths = random_lengths(B, T, 11000 + seed);
    const Mask mask = Mask::from_lengths(lengths);
    const Tensor3<float> x = random_input(m, B, T, 12000 + seed);
    train(m.model, x, mask, 3);

    std::stringstream file;
    save_weights(m.model, file);
    RandomModel<float> other = random_model<float>(structure, RandomModelOptions().steps(T).fixed_time(true), 777 + seed);
    ASSERT_EQ(other.recipe, m.recipe);
    const std::vector<float> saved = all_values(m.model);
    if (!m.model.params().empty()) {
      EXPECT_FALSE(same_bits(all_values(other.model), saved)) << "other weights expected";
    }
    load_weights(other.model, file);
    EXPECT_TRUE(same_bits(all_values(other.model), saved));
    const Tensor3<float> y = m.model.predict(x, mask);
    const Mask my = m.model.output_mask();
    EXPECT_TRUE(same_valid_steps(y, my, other.model.predict(x, mask), other.model.output_mask()));
    EXPECT_EQ(std::memcmp(y.data(), other.model.output().data(), y.size() * sizeof(float)), 0) << "padded outputs too";
  }
}

TEST(PropertyIo, ModelFilesOfRandomModelsRebuildTheSameModel) {
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 5, B = 4;
    const std::uint64_t structure = 60000 + seed;
    RandomModel<float> m = random_model<float>(structure, RandomModelOptions().steps(T).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << structure << ":" << m.recipe);
    const Mask mask = Mask::from_lengths(random_lengths(B, T, 17000 + seed));
    const Tensor3<float> x = random_input(m, B, T, 18000 + seed);
    train(m.model, x, mask, 2);

    std::stringstream file;
    save_model(m.model, file);
    const std::string bytes = file.str();
    Sequential<float> loaded = load_model<float>(file);
    EXPECT_EQ(layer_entry(loaded), layer_entry(m.model)) << layer_entry(loaded).dump();
    EXPECT_EQ(loaded.summary(T), m.model.summary(T));
    ASSERT_EQ(loaded.size(), m.model.size());
    for (Index i = 0; i < loaded.size(); ++i) EXPECT_EQ(loaded.layer(i).describe(), m.model.layer(i).describe());
    EXPECT_TRUE(same_bits(all_values(loaded), all_values(m.model)));
    const Tensor3<float> y = m.model.predict(x, mask);
    const Tensor3<float>& y_loaded = loaded.predict(x, mask);
    ASSERT_EQ(y.dimensions(), y_loaded.dimensions());
    EXPECT_EQ(std::memcmp(y.data(), y_loaded.data(), y.size() * sizeof(float)), 0) << "bitwise, padded outputs too";

    if (seed % 10 == 0) {  // float32 file -> double model: the same values, predictions to float precision
      std::stringstream again(bytes);
      Sequential<double> as_double = load_model<double>(again);
      EXPECT_EQ(as_double.summary(T), m.model.summary(T));
      Tensor3<double> xd = x.cast<double>();
      const Tensor3<double>& yd = as_double.predict(xd, mask);
      for (Index i = 0; i < y.size(); ++i) EXPECT_NEAR(yd.data()[i], y.data()[i], 1e-4 * (1 + std::abs(y.data()[i])));
    }
  }
}

TEST(PropertyIo, CopiesOfRandomModelsPredictTheSameAndShareNothing) {
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 5, B = 3;
    RandomModel<float> m = random_model<float>(30000 + seed, RandomModelOptions().steps(T).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << 30000 + seed << ":" << m.recipe);
    const Mask mask = Mask::from_lengths(random_lengths(B, T, 13000 + seed));
    const Tensor3<float> x = random_input(m, B, T, 14000 + seed);
    Sequential<float> copy = m.model;
    const std::vector<float> before = all_values(m.model);
    const Tensor3<float> y = m.model.predict(x, mask);
    EXPECT_EQ(std::memcmp(y.data(), copy.predict(x, mask).data(), y.size() * sizeof(float)), 0);
    train(copy, x, mask, 2);
    EXPECT_TRUE(same_bits(all_values(m.model), before)) << "training a copy changed the original";
  }
}

TEST(PropertyIo, RestoringACheckpointByAssignmentKeepsTheOptimizerValid) {
  for (int seed = 1; seed <= kModels; seed += property_stride()) {
    const Index T = 3 + seed % 5, B = 3;
    RandomModel<float> m = random_model<float>(40000 + seed, RandomModelOptions().steps(T).fixed_time(true));
    SCOPED_TRACE(::testing::Message() << "model seed " << 40000 + seed << ":" << m.recipe);
    if (m.model.params().empty()) continue;
    const Mask mask = Mask::from_lengths(random_lengths(B, T, 15000 + seed));
    const Tensor3<float> x = random_input(m, B, T, 16000 + seed);
    Adam<float> adam(m.model.params(), AdamOptions().lr(0.01));
    MeanSquaredError<float> loss;
    auto step = [&] {
      const Tensor3<float>& y = m.model.forward(x, mask, Mode::Train);
      Tensor3<float> target(y.dimensions());
      target.setConstant(0.5f);
      loss.forward(y, target, m.model.output_mask());
      adam.zero_grad();
      m.model.backward(loss.grad());
      adam.step();
    };
    step();
    const Sequential<float> best = m.model;
    const std::vector<float> saved = all_values(m.model);
    step();
    step();
    m.model = best;
    EXPECT_TRUE(same_bits(all_values(m.model), saved));
    Sequential<float> copy = best;
    const Tensor3<float> y = m.model.forward(x, mask, Mode::Train);
    EXPECT_EQ(std::memcmp(y.data(), copy.forward(x, mask, Mode::Train).data(), y.size() * sizeof(float)), 0);
    EXPECT_NO_THROW(step());
    const ParamList<float> restored = m.model.params();  // the optimizer writes into the model's own tensors
    ASSERT_EQ(restored.size(), adam.params().size());
    for (size_t i = 0; i < restored.size(); ++i) EXPECT_EQ(restored[i].value, adam.params()[i].value);
    // Another architecture: the optimizer refuses instead of writing into the replaced layers.
    m.model = random_model<float>(50000 + seed, RandomModelOptions().steps(T).fixed_time(true)).model;
    bool replaced = false;
    try {
      adam.step();
    } catch (const UsageError&) {
      replaced = true;
    }
    if (!replaced) {  // allowed only when every layer the optimizer holds was kept in place
      const ParamList<float> now = m.model.params();
      for (const auto& p : adam.params())
        EXPECT_TRUE(std::any_of(now.begin(), now.end(), [&](const Param<float>& q) { return q.value == p.value; }))
            << p.name << " was replaced but the optimizer did not notice";
    }
  }
}

}  // namespace
