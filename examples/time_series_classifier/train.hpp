#pragma once
// Training and evaluation of the example's classifier (softmax cross-entropy, Adam or AdamW).
//
//   train(model, data, options, bar)   `epochs` passes over a seeded shuffle of data in mini-batches, each
//                                      padded to its longest sequence; returns the loss and accuracy of every
//                                      epoch (running means over its batches); bar (may be null) shows progress.
//                                      Options (TrainOptions): the peak learning rate, reached after a linear
//                                      warm-up over the first `warmup` fraction of the steps and followed by a
//                                      cosine decay to 0 at the last step when `cosine` (optim/lr_schedule.hpp);
//                                      AdamW's decoupled weight decay; label smoothing (loss/cross_entropy.hpp).
//                                      With a validation set, each epoch ends with its loss and accuracy there; the
//                                      weights of the best epoch (highest validation accuracy, then lowest
//                                      validation loss) are restored at the end, and with patience > 0 training
//                                      stops after `patience` epochs without a better one (early stopping).
//                                      With a test set (TrainOptions::test, for the training curves), each epoch
//                                      also ends with its loss and accuracy there; it chooses nothing.
//                                      Stops with TrainingError as soon as a batch's loss is NaN or Inf (before
//                                      that batch's update), or a parameter is after an epoch:
//                                        "train: the training loss is NaN at epoch 1, batch 2 of 63: training
//                                        diverged (learning rate 1e+30); try a smaller --lr, e.g. 1e+29"
//                                      (in the very first batch, before any update, it points at the data)
//   non_finite_parameter(net)          the name of the first parameter or buffer holding a NaN or Inf, else ""
//   evaluate(net, data)                accuracy, mean loss, predictions and confusion matrix (rows: true class,
//                                      columns: predicted class), in Mode::Infer, batches of `batch_size`
//   format_confusion(eval, names)      the confusion matrix as an aligned text table

#include <seqattn/loss/cross_entropy.hpp>
#include <seqattn/loss/metrics.hpp>
#include <seqattn/optim/adam.hpp>
#include <seqattn/optim/lr_schedule.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "data.hpp"
#include "model.hpp"
#include "progress.hpp"

namespace tsc {

struct TrainOptions {
  Index epochs = 10;
  Index batch_size = 32;
  double lr = 1e-3;              // the peak learning rate
  std::uint64_t seed = 1;        // shuffling
  double warmup = 0.0;           // fraction of the steps of linear warm-up, in [0, 1)
  bool cosine = false;           // cosine decay to 0 after the warm-up (else constant)
  double weight_decay = 0.0;     // AdamW's decoupled weight decay (0: Adam)
  double label_smoothing = 0.0;  // in [0, 1)
  const Dataset* validation = nullptr;  // evaluated after each epoch; the best epoch's weights are kept
  Index patience = 0;                   // with a validation set: stop after this many epochs without progress (0: never)
  const Dataset* test = nullptr;        // evaluated after each epoch for the training curves only (never chooses
                                        // weights or stops training)
};

struct EpochResult {
  double loss = 0, accuracy = 0, seconds = 0;
  double validation_loss = 0, validation_accuracy = 0;  // with a validation set
  double test_loss = 0, test_accuracy = 0;              // with TrainOptions::test
  bool has_validation = false, has_test = false;
  double lr = 0;                                        // at the epoch's last step
};

// The values of every parameter and buffer of a model, to restore the best epoch's weights.
class Snapshot {
 public:
  void take(Classifier::Net& net) {
    values_.clear();
    for (const auto& list : {net.params(), net.buffers()})
      for (const auto& p : list) values_.emplace_back(p.values().data(), p.values().data() + p.values().size());
  }
  void restore(Classifier::Net& net) const {
    size_t k = 0;
    for (const auto& list : {net.params(), net.buffers()})
      for (const auto& p : list) {
        std::copy(values_[k].begin(), values_[k].end(), p.values().data());
        ++k;
      }
  }
  bool empty() const { return values_.empty(); }

 private:
  std::vector<std::vector<float>> values_;
};



// Training diverged (a non-finite loss or parameter).
class TrainingError : public std::runtime_error {
 public:
  explicit TrainingError(const std::string& what) : std::runtime_error(what) {}
};

inline std::string non_finite_parameter(Classifier::Net& net) {
  for (const auto& list : {net.params(), net.buffers()})
    for (const auto& p : list)
      if (!p.values().allFinite()) return p.name;
  return "";
}

namespace train_detail {
inline std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Inf" : "-Inf";
  std::ostringstream out;
  out << v;
  return out.str();
}
inline std::string smaller_lr(double lr) { return "try a smaller --lr, e.g. " + number(lr / 10); }
}  // namespace train_detail

struct Evaluation {
  double accuracy = 0, loss = 0;
  std::vector<int> predicted;                 // (N)
  std::vector<std::vector<Index>> confusion;  // (classes, classes): [true][predicted]
};

inline Evaluation evaluate(Classifier::Net& net, const Dataset& data, Index batch_size = 256) {
  Evaluation e;
  const Index C = data.classes();
  e.confusion.assign(static_cast<size_t>(C), std::vector<Index>(static_cast<size_t>(C), 0));
  std::vector<Index> order(static_cast<size_t>(data.size()));
  std::iota(order.begin(), order.end(), Index{0});
  seqattn::SoftmaxCrossEntropy<float> loss;
  seqattn::Tensor3<float> x;
  seqattn::Mask mask;
  std::vector<int> labels, predicted;
  double loss_sum = 0;
  Index correct = 0;
  for (Index begin = 0; begin < data.size(); begin += batch_size) {
    const Index end = std::min(begin + batch_size, data.size());
    make_batch(data, order, begin, end, x, mask, labels);
    const auto& logits = net.predict(x, mask);
    loss_sum += loss.forward(logits, labels) * static_cast<double>(end - begin);
    seqattn::argmax_labels(logits, seqattn::Mask(), predicted);
    for (size_t j = 0; j < labels.size(); ++j) {
      e.predicted.push_back(predicted[j]);
      ++e.confusion[static_cast<size_t>(labels[j])][static_cast<size_t>(predicted[j])];
      correct += labels[j] == predicted[j];
    }
  }
  const double n = static_cast<double>(std::max<Index>(1, data.size()));
  e.accuracy = static_cast<double>(correct) / n;
  e.loss = loss_sum / n;
  return e;
}

inline std::vector<EpochResult> train(Classifier& model, const Dataset& data, const TrainOptions& options,
                                      ProgressBar* bar = nullptr) {
  if (data.size() == 0) throw DataError("train: the training set is empty");
  auto& net = model.net();
  seqattn::SoftmaxCrossEntropy<float> loss(options.label_smoothing);
  seqattn::Adam<float> adam(net.params(), seqattn::AdamOptions().lr(options.lr).weight_decay(options.weight_decay)
                                              .decoupled_weight_decay(options.weight_decay > 0));
  std::vector<Index> order(static_cast<size_t>(data.size()));
  std::iota(order.begin(), order.end(), Index{0});
  seqattn::Rng rng(options.seed);
  seqattn::Tensor3<float> x;
  seqattn::Mask mask;
  std::vector<int> labels;
  const Index B = std::max<Index>(1, options.batch_size);
  const Index steps = (data.size() + B - 1) / B;
  if (!(options.warmup >= 0 && options.warmup < 1))
    throw std::invalid_argument("train: expected warmup in [0, 1) but got " + train_detail::number(options.warmup));
  const Index total_steps = std::max<Index>(1, steps * options.epochs);
  const Index warmup_steps = std::min<Index>(total_steps - 1, static_cast<Index>(options.warmup * static_cast<double>(total_steps)));
  const seqattn::WarmupCosineSchedule schedule(seqattn::WarmupCosineOptions()
                                                   .peak_lr(options.lr)
                                                   .warmup_steps(warmup_steps)
                                                   .total_steps(options.cosine ? total_steps : warmup_steps + 1)
                                                   .final_lr(options.cosine ? 0.0 : options.lr));
  Index global_step = 0;
  Snapshot best;
  double best_accuracy = -1, best_loss = 0;
  Index since_best = 0;
  std::vector<EpochResult> history;
  for (Index epoch = 1; epoch <= options.epochs; ++epoch) {
    for (Index i = data.size() - 1; i > 0; --i)  // Fisher-Yates shuffle
      std::swap(order[static_cast<size_t>(i)], order[rng.below(static_cast<std::uint64_t>(i + 1))]);
    if (bar) bar->start("epoch " + std::to_string(epoch) + "/" + std::to_string(options.epochs), steps);
    const double t0 = steady_seconds();
    double loss_sum = 0, correct = 0;
    Index seen = 0;
    for (Index step = 0; step < steps; ++step) {
      const Index begin = step * B, end = std::min(begin + B, data.size());
      make_batch(data, order, begin, end, x, mask, labels);
      net.zero_grad();
      const auto& logits = net.forward(x, mask, seqattn::Mode::Train);  // (b, 1, classes)
      const double n = static_cast<double>(end - begin);
      const double value = loss.forward(logits, labels);
      loss_sum += value * n;
      correct += seqattn::accuracy(logits, labels) * n;
      seen += end - begin;
      if (!std::isfinite(value)) {  // stop before this batch updates the weights
        if (bar) {
          bar->update(step + 1, seen, loss_sum / static_cast<double>(seen), correct / static_cast<double>(seen));
          bar->finish();
        }
        const std::string where = "train: the training loss is " + train_detail::number(value) + " at epoch " +
                                  std::to_string(epoch) + ", batch " + std::to_string(step + 1) + " of " +
                                  std::to_string(steps);
        if (epoch == 1 && step == 0)  // no update yet: the data or the initial model, not the learning rate
          throw TrainingError(where + ", before any update: check the data for NaN, Inf or huge values");
        throw TrainingError(where + ": training diverged (learning rate " + train_detail::number(options.lr) + "); " +
                            train_detail::smaller_lr(options.lr));
      }
      net.backward(loss.grad());
      schedule.apply(adam, global_step++);
      adam.step();
      if (bar) bar->update(step + 1, seen, loss_sum / static_cast<double>(seen), correct / static_cast<double>(seen));
    }
    if (bar) bar->finish();
    const std::string bad = non_finite_parameter(net);
    if (!bad.empty())
      throw TrainingError("train: parameter " + bad + " holds NaN or Inf after epoch " + std::to_string(epoch) +
                          ": training diverged (learning rate " + train_detail::number(options.lr) + "); " +
                          train_detail::smaller_lr(options.lr));
    EpochResult result;
    result.loss = loss_sum / static_cast<double>(seen);
    result.accuracy = correct / static_cast<double>(seen);
    result.lr = adam.lr();
    if (options.validation != nullptr) {
      const Evaluation v = evaluate(net, *options.validation, 256);
      result.validation_loss = v.loss;
      result.validation_accuracy = v.accuracy;
      result.has_validation = true;
      if (v.accuracy > best_accuracy || (v.accuracy == best_accuracy && v.loss < best_loss)) {
        best_accuracy = v.accuracy;
        best_loss = v.loss;
        best.take(net);
        since_best = 0;
      } else {
        ++since_best;
      }
      if (bar) {
        char line[160];
        std::snprintf(line, sizeof line, "  validation: loss %.4f  acc %.4f%s", v.loss, v.accuracy,
                      since_best == 0 ? "  (best so far: kept)" : "");
        bar->note(line);
      }
    }
    if (options.test != nullptr) {
      const Evaluation t = evaluate(net, *options.test, 256);
      result.test_loss = t.loss;
      result.test_accuracy = t.accuracy;
      result.has_test = true;
    }
    result.seconds = steady_seconds() - t0;
    history.push_back(result);
    if (options.patience > 0 && since_best >= options.patience) break;
  }
  if (!best.empty()) best.restore(net);
  return history;
}

// How much of the model's attention goes to step `step`, averaged over the sequences of data that have it:
// pooling = the weighted-pooling weight of the step (0 without weighted pooling); attention = the attention
// map's weight on the step (as a key), averaged over the valid queries and the heads.
struct StepAttention {
  double pooling = 0, attention = 0;
};

inline StepAttention attention_on_step(Classifier& model, const Dataset& data, Index step, Index batch_size = 256) {
  StepAttention share;
  std::vector<Index> order(static_cast<size_t>(data.size()));
  std::iota(order.begin(), order.end(), Index{0});
  seqattn::Tensor3<float> x;
  seqattn::Mask mask;
  std::vector<int> labels;
  Index counted = 0;
  for (Index begin = 0; begin < data.size(); begin += batch_size) {
    const Index end = std::min(begin + batch_size, data.size());
    make_batch(data, order, begin, end, x, mask, labels);
    model.net().predict(x, mask);
    for (Index b = 0; b < end - begin; ++b) {
      const Index len = mask.length(b, x.dimension(1));
      if (step >= len) continue;
      const auto A = model.attention_map(b);  // (T, T)
      share.attention += static_cast<double>(A.col(step).head(len).mean());
      const auto w = model.pooling_weights(b);
      if (!w.empty()) share.pooling += w[static_cast<size_t>(step)];
      ++counted;
    }
  }
  if (counted > 0) {
    share.attention /= static_cast<double>(counted);
    share.pooling /= static_cast<double>(counted);
  }
  return share;
}

inline std::string format_confusion(const Evaluation& e, const std::vector<std::string>& names) {
  size_t name_width = 4, cell = 5;
  for (const auto& n : names) name_width = std::max(name_width, n.size());
  for (const auto& row : e.confusion)
    for (Index v : row) cell = std::max(cell, std::to_string(v).size() + 1);
  std::string out = "confusion matrix (rows: true class, columns: predicted class index)\n";
  out += std::string(name_width + 6, ' ');
  for (size_t c = 0; c < e.confusion.size(); ++c) {
    const std::string h = std::to_string(c);
    out += std::string(cell - h.size(), ' ') + h;
  }
  out += '\n';
  for (size_t r = 0; r < e.confusion.size(); ++r) {
    const std::string idx = std::to_string(r);
    out += std::string(3 - std::min<size_t>(3, idx.size()), ' ') + idx + "  " + names[r] +
           std::string(name_width - names[r].size() + 1, ' ');
    for (Index v : e.confusion[r]) {
      const std::string s = std::to_string(v);
      out += std::string(cell - s.size(), ' ') + s;
    }
    out += '\n';
  }
  return out;
}

}  // namespace tsc
