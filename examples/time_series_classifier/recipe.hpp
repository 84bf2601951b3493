#pragma once
// The training recipe for real data (the UCR/UEA archive, files of your own): a model scaled to the data and the
// training options, chosen from the training set alone (never from a test set).
//
//   Recipe r = default_recipe(train);            the documented defaults below, for this training set
//   stratified_split(d, fraction, seed)          (rest, held out): each class keeps its share in both parts
//
// The defaults (chosen on validation splits of the training files of the four shared datasets; docs/pages/real_data.md
// gives the measurements):
//   input       each channel standardized with the training set's mean and standard deviation; missing values
//               then imputed (data.hpp impute_missing: linear interpolation within the channel)
//   model       conv front end (Conv1D 7, 5, 3 with BatchNorm and ReLU, d_model 64), then
//               downsample = ceil(T / 64) average pooling when the series are longer than 64 steps, sinusoidal
//               positions, 1 block of MultiHeadAttention (4 heads) + feed-forward (128) with residuals and
//               LayerNorm, mean pooling over the valid steps, Dense(classes)
//   training    AdamW, peak learning rate 1e-3, weight decay 1e-2, label smoothing 0.1, batches of
//               clamp(N / 10, 4, 32) sequences, linear warm-up over the first 5% of the steps then cosine decay
//               to 0, epochs so that training takes about 1500 optimizer steps (at least 30, at most 400 epochs)
//   selection   none: every run trains on the whole training set for the scheduled steps (a fixed recipe)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "data.hpp"
#include "model.hpp"
#include "train.hpp"

namespace tsc {

struct Recipe {
  ModelConfig model;
  TrainOptions train;
};

inline Recipe default_recipe(const Dataset& train) {
  Recipe r;
  ModelConfig& m = r.model;
  m.features = train.features();
  m.classes = train.classes();
  m.front_end = FrontEnd::Conv;
  m.d_model = 64;
  m.attention = AttentionKind::MultiHead;
  m.heads = 4;
  m.ffn = 128;
  m.pooling = Pooling::Mean;
  const Index T = std::max<Index>(1, train.max_length());
  m.downsample = T > 64 ? (T + 63) / 64 : 1;
  TrainOptions& o = r.train;
  const Index N = train.size();
  o.batch_size = std::clamp<Index>(N / 10, 4, 32);
  const Index steps_per_epoch = (N + o.batch_size - 1) / o.batch_size;
  o.epochs = std::clamp<Index>((1500 + steps_per_epoch - 1) / steps_per_epoch, 30, 400);
  o.lr = 1e-3;
  o.warmup = 0.05;
  o.cosine = true;
  o.weight_decay = 1e-2;
  o.label_smoothing = 0.1;
  return r;
}

// (rest, held out): from each class, round(fraction * its count) sequences of a seeded shuffle are held out (at
// least 1 from a class of 2 or more, never all of a class). DataError when nothing can be held out.
inline std::pair<Dataset, Dataset> stratified_split(const Dataset& d, double fraction, std::uint64_t seed) {
  std::map<int, std::vector<Index>> by_class;
  for (Index i = 0; i < d.size(); ++i) by_class[d.labels[static_cast<size_t>(i)]].push_back(i);
  seqattn::Rng rng(seed);
  std::vector<Index> rest, held;
  for (auto& [label, members] : by_class) {
    for (Index i = static_cast<Index>(members.size()) - 1; i > 0; --i)
      std::swap(members[static_cast<size_t>(i)], members[rng.below(static_cast<std::uint64_t>(i + 1))]);
    const Index n = static_cast<Index>(members.size());
    const Index k = n < 2 ? 0 : std::clamp<Index>(static_cast<Index>(std::lround(fraction * static_cast<double>(n))), 1, n - 1);
    held.insert(held.end(), members.begin(), members.begin() + k);
    rest.insert(rest.end(), members.begin() + k, members.end());
  }
  if (held.empty()) throw DataError("stratified_split: no class has 2 or more sequences to hold one out");
  std::sort(rest.begin(), rest.end());
  std::sort(held.begin(), held.end());
  return {subset(d, rest), subset(d, held)};
}

}  // namespace tsc
