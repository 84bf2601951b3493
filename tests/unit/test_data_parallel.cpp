// distributed/ without MPI: the batch plan, RandomScope, DataParallel over LocalCommunicator (the single-process
// reference of the MPI tests, tests/mpi), optimizer states and checkpoints (io/checkpoint.hpp). The exactness
// across 1..4 processes is tested by tests/mpi (mpirun inside ctest).
#include <gtest/gtest.h>

#include <seqattn/seqattn.hpp>
#include <seqattn/distributed/checkpoint.hpp>
#include <seqattn/distributed/data_parallel.hpp>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

using namespace seqattn;

namespace {

constexpr Index kF = 3, kC = 3;

Sequential<double> small_model(bool batch_norm = false, double dropout = 0.0) {
  manual_seed(77);
  Sequential<double> m(kF);
  m.add<Dense<double>>(5, Activation::Tanh);
  if (batch_norm) m.add<BatchNorm<double>>();
  if (dropout > 0) m.add<Dropout<double>>(dropout);
  m.add<GlobalAvgPool<double>>();
  m.add<Dense<double>>(kC);
  return m;
}

// n samples with lengths 2..6 padded to 6; labels from a fixed rule.
struct Data {
  Tensor3<double> x;
  std::vector<Index> lengths;
  std::vector<int> labels;
};
Data make_data(Index n) {
  Rng rng(5);
  Data d{Tensor3<double>(n, 6, kF), {}, {}};
  d.x.setZero();
  for (Index i = 0; i < n; ++i) {
    d.lengths.push_back(2 + static_cast<Index>(rng.below(5)));
    for (Index t = 0; t < d.lengths.back(); ++t)
      for (Index f = 0; f < kF; ++f) d.x(i, t, f) = rng.normal();
    d.labels.push_back(static_cast<int>(rng.below(kC)));
  }
  return d;
}
Batch<double, std::vector<int>> slice(const Data& d, Index begin, Index end) {
  Batch<double, std::vector<int>> b;
  b.x = Tensor3<double>(end - begin, 6, kF);
  for (Index i = begin; i < end; ++i)
    for (Index t = 0; t < 6; ++t)
      for (Index f = 0; f < kF; ++f) b.x(i - begin, t, f) = d.x(i, t, f);
  b.mask = Mask::from_lengths(std::vector<Index>(d.lengths.begin() + begin, d.lengths.begin() + end));
  b.target.assign(d.labels.begin() + begin, d.labels.begin() + end);
  return b;
}
std::vector<double> gradients(Sequential<double>& m) {
  std::vector<double> g;
  for (const auto& p : m.params()) g.insert(g.end(), p.grad, p.grad + p.size());
  return g;
}
std::vector<double> values(Sequential<double>& m) {
  std::vector<double> v;
  for (const auto& list : {m.params(), m.buffers()})
    for (const auto& p : list) v.insert(v.end(), p.value, p.value + p.size());
  return v;
}

}  // namespace

TEST(BatchPlan, ChunksPartitionEveryBatchAndRanksTakeBalancedConsecutiveRuns) {
  for (Index n : {1, 7, 16, 45})
    for (Index chunk : {1, 4, 5})
      for (int ranks = 1; ranks <= 5; ++ranks) {
        const Index K = chunk_count(n, chunk);
        Index next_chunk = 0, next_position = 0;
        for (int r = 0; r < ranks; ++r) {
          const ChunkRange c = rank_chunks(n, chunk, r, ranks);
          EXPECT_EQ(c.first, next_chunk);
          EXPECT_LE(c.size(), K / ranks + 1);
          EXPECT_GE(c.size(), K / ranks);
          next_chunk = c.last;
          const BatchSpan s = shard_positions(n, chunk, r, ranks);
          if (c.size() > 0) {
            EXPECT_EQ(s.begin, next_position);
            next_position = s.end;
          }
        }
        EXPECT_EQ(next_chunk, K);
        EXPECT_EQ(next_position, n);
      }
  EXPECT_EQ(batch_count(45, 16), 3);
  EXPECT_EQ(batch_span(45, 16, 2).size(), 13);  // the uneven last batch
  EXPECT_THROW(batch_span(45, 16, 3), ConfigError);
  EXPECT_THROW(rank_chunks(8, 2, 2, 2), ConfigError);
  EXPECT_THROW(chunk_count(8, 0), ConfigError);
}

TEST(BatchPlan, EpochOrderIsAPermutationFixedBySeedAndEpoch) {
  const auto a = epoch_order(100, 3, 0), b = epoch_order(100, 3, 0), c = epoch_order(100, 3, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(std::set<Index>(a.begin(), a.end()).size(), 100u);
  EXPECT_NE(epoch_order(100, 4, 0), a);
}

TEST(RandomScope, DropoutDrawsDependOnlyOnTheScopeSeed) {
  Dropout<double> drop(4, 0.5, DropoutOptions().seed(1));
  Tensor3<double> x(2, 5, 4);
  x.setConstant(1.0);
  auto masks = [&](std::uint64_t scope_seed, int warmup) {
    for (int i = 0; i < warmup; ++i) drop.forward(x, Mask(), Mode::Train);
    RandomScope scope(scope_seed);
    Tensor3<double> y = drop.forward(x, Mask(), Mode::Train);
    EXPECT_EQ(scope.streams_reseeded(), 1u);
    return std::vector<double>(y.data(), y.data() + y.size());
  };
  const auto a = masks(9, 0), b = masks(9, 3), c = masks(10, 0);
  EXPECT_EQ(a, b);  // earlier draws do not matter inside a scope
  EXPECT_NE(a, c);
  Tensor3<double> outside1 = drop.forward(x, Mask(), Mode::Train), outside2 = drop.forward(x, Mask(), Mode::Train);
  EXPECT_NE(std::vector<double>(outside1.data(), outside1.data() + 40),
            std::vector<double>(outside2.data(), outside2.data() + 40));  // outside: the layer's own stream goes on
}

TEST(DataParallelLocal, GradientIsTheFullBatchGradientFoldedOverChunks) {
  const Data d = make_data(11);
  Sequential<double> full = small_model(), chunked = small_model();
  SoftmaxCrossEntropy<double> loss;
  full.zero_grad();
  const Batch<double, std::vector<int>> all = slice(d, 0, 11);
  const StepLoss<double> reference = train_step(full, loss, all.x, all.mask, all.target);
  LocalCommunicator comm;
  DataParallel<double, LocalCommunicator> dp(comm, chunked, DataParallelOptions().chunk_size(3));
  const StepStats s = dp.step(loss, 11, [&](BatchSpan c) { return slice(d, c.begin, c.end); });
  EXPECT_EQ(s.chunks, 4);
  EXPECT_EQ(s.count, 11);
  EXPECT_NEAR(s.loss, reference.data, 1e-12);
  const auto g_full = gradients(full), g_dp = gradients(chunked);
  ASSERT_EQ(g_full.size(), g_dp.size());
  for (size_t i = 0; i < g_full.size(); ++i) EXPECT_NEAR(g_dp[i], g_full[i], 1e-12) << i;
  EXPECT_EQ(dp.step_number(), 1);
}

TEST(DataParallelLocal, BuffersMoveByTheMeanOfTheChunksChanges) {
  const Data d = make_data(8);
  Sequential<double> model = small_model(true);
  const std::vector<double> before = values(model);
  std::vector<std::vector<double>> moved;
  for (Index c = 0; c < 2; ++c) {  // each chunk's buffers alone, from the same start
    Sequential<double> one = small_model(true);
    const auto b = slice(d, 4 * c, 4 * c + 4);
    one.forward(b.x, b.mask, Mode::Train);
    moved.push_back(values(one));
  }
  SoftmaxCrossEntropy<double> loss;
  LocalCommunicator comm;
  DataParallel<double, LocalCommunicator> dp(comm, model, DataParallelOptions().chunk_size(4));
  dp.step(loss, 8, [&](BatchSpan c) { return slice(d, c.begin, c.end); });
  const std::vector<double> after = values(model);
  size_t changed = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    const double expected = before[i] + 0.5 * ((moved[0][i] - before[i]) + (moved[1][i] - before[i]));
    EXPECT_NEAR(after[i], expected, 1e-14) << i;
    changed += after[i] != before[i];
  }
  EXPECT_GT(changed, 0u);  // the running statistics moved; the parameters did not (no optimizer step)
}

TEST(DataParallelLocal, AChunkThatThrowsFailsTheStepAndLeavesTheModelUnchanged) {
  const Data d = make_data(8);
  Sequential<double> model = small_model(true, 0.3);
  SoftmaxCrossEntropy<double> loss;
  LocalCommunicator comm;
  DataParallel<double, LocalCommunicator> dp(comm, model, DataParallelOptions().chunk_size(2));
  const std::vector<double> before = values(model);
  try {
    dp.step(loss, 8, [&](BatchSpan c) {
      if (c.begin == 4) throw std::runtime_error("bad sample 4");
      return slice(d, c.begin, c.end);
    });
    FAIL() << "expected DistributedError";
  } catch (const DistributedError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0 of 1 failed: bad sample 4"), std::string::npos) << e.what();
  }
  EXPECT_EQ(values(model), before);
  EXPECT_EQ(dp.step_number(), 0);
}

TEST(DataParallelLocal, DropoutStepsRepeatFromTheSeedAndStep) {
  const Data d = make_data(8);
  auto run = [&](int warmup_draws) {
    Sequential<double> model = small_model(false, 0.4);
    Tensor3<double> x = d.x;
    for (int i = 0; i < warmup_draws; ++i) model.forward(x, Mask::from_lengths(d.lengths), Mode::Train);
    SoftmaxCrossEntropy<double> loss;
    LocalCommunicator comm;
    DataParallel<double, LocalCommunicator> dp(comm, model, DataParallelOptions().chunk_size(3).seed(11));
    dp.step(loss, 8, [&](BatchSpan c) { return slice(d, c.begin, c.end); });
    return gradients(model);
  };
  EXPECT_EQ(run(0), run(2));  // the chunks' masks come from (seed, step, chunk), not from earlier draws
}

TEST(OptimizerState, AdamAndSgdRoundTripAndRefuseAnotherLayout) {
  Sequential<double> a = small_model(), b = small_model();
  Adam<double> adam(a.params(), AdamOptions().amsgrad(true));
  for (auto& p : a.params()) std::fill(p.grad, p.grad + p.size(), 0.1);
  adam.step();
  const OptimizerState<double> s = adam.state();
  EXPECT_EQ(s.step, 1);
  EXPECT_EQ(s.tensors.size(), 3 * a.params().size());
  Adam<double> other(b.params(), AdamOptions().amsgrad(true));
  other.load_state(s);
  EXPECT_EQ(other.step_count(), 1);
  EXPECT_EQ(other.exp_avg(0), adam.exp_avg(0));
  Adam<double> plain(b.params());
  EXPECT_THROW(plain.load_state(s), ConfigError);  // no v_max tensors
  SGD<double> sgd(b.params(), SGDOptions().momentum(0.9));
  EXPECT_THROW(sgd.load_state(s), ConfigError);
  for (auto& p : b.params()) std::fill(p.grad, p.grad + p.size(), 0.2);
  sgd.step();
  SGD<double> sgd2(a.params(), SGDOptions().momentum(0.9));
  sgd2.load_state(sgd.state());
  EXPECT_EQ(sgd2.momentum_buffer(1), sgd.momentum_buffer(1));
}

TEST(Checkpoint, ResumingContinuesToTheSameBits) {
  const Data d = make_data(12);
  SoftmaxCrossEntropy<double> loss;
  auto train = [&](Sequential<double>& model, Adam<double>& adam, DataParallel<double, LocalCommunicator>& dp,
                   int steps) {
    for (int i = 0; i < steps; ++i) {
      dp.step(loss, 12, [&](BatchSpan c) { return slice(d, c.begin, c.end); });
      adam.step();
    }
    (void)model;
  };
  LocalCommunicator comm;
  Sequential<double> straight = small_model(true, 0.3);
  Adam<double> adam1(straight.params());
  DataParallel<double, LocalCommunicator> dp1(comm, straight, DataParallelOptions().chunk_size(5).seed(3));
  train(straight, adam1, dp1, 6);

  const std::string path = ::testing::TempDir() + "seqattn_checkpoint_test.ckpt";
  Sequential<double> first = small_model(true, 0.3);
  Adam<double> adam2(first.params());
  DataParallel<double, LocalCommunicator> dp2(comm, first, DataParallelOptions().chunk_size(5).seed(3));
  train(first, adam2, dp2, 3);
  TrainingProgress p;
  p.global_step = dp2.step_number();
  p.extra = {{"note", "half way"}};
  save_checkpoint(dp2, path, first, adam2, p);

  manual_seed(999);  // a fresh process: other initial weights
  Sequential<double> resumed = small_model(true, 0.3);
  Adam<double> adam3(resumed.params());
  DataParallel<double, LocalCommunicator> dp3(comm, resumed, DataParallelOptions().chunk_size(5).seed(3));
  const TrainingProgress q = load_checkpoint(dp3, path, resumed, adam3);
  EXPECT_EQ(q.global_step, 3);
  EXPECT_EQ(q.extra["note"], "half way");
  EXPECT_EQ(dp3.step_number(), 3);
  train(resumed, adam3, dp3, 3);
  EXPECT_EQ(values(resumed), values(straight));
  std::remove(path.c_str());
}

TEST(Checkpoint, DamagedOrForeignFilesAreRefusedBeforeAnyChange) {
  Sequential<double> model = small_model();
  Adam<double> adam(model.params());
  auto bytes = encode_checkpoint(model, adam, TrainingProgress());
  Sequential<double> target = small_model();
  Adam<double> target_adam(target.params());
  for (auto& p : target.params()) std::fill(p.value, p.value + p.size(), 0.5);
  const auto before = values(target);
  auto damaged = bytes;
  damaged[damaged.size() / 2] ^= 1;
  EXPECT_THROW(decode_checkpoint(damaged, target, target_adam), FormatError);
  auto truncated = bytes;
  truncated.resize(bytes.size() - 9);
  EXPECT_THROW(decode_checkpoint(truncated, target, target_adam), FormatError);
  EXPECT_THROW(decode_checkpoint(std::vector<unsigned char>(10, 0), target, target_adam), FormatError);
  Sequential<double> wider = small_model(true);
  Adam<double> wider_adam(wider.params());
  EXPECT_THROW(decode_checkpoint(bytes, wider, wider_adam), MismatchError);
  SGD<double> sgd(target.params());
  EXPECT_THROW(decode_checkpoint(bytes, target, sgd), ConfigError);
  EXPECT_EQ(values(target), before);
  decode_checkpoint(bytes, target, target_adam);
  EXPECT_EQ(values(target), values(model));
}

TEST(Checkpoint, PathsThatHoldNoCheckpointAreRefusedNamingThePath) {
  Sequential<double> model = small_model();
  Adam<double> adam(model.params());
  const std::string dir = ::testing::TempDir();
  const std::string missing = dir + "seqattn_no_such_checkpoint.ckpt", empty = dir + "seqattn_empty.ckpt";
  std::ofstream(empty).close();
  for (const std::string& path : {missing, empty, dir}) {
    try {
      load_checkpoint(path, model, adam);
      FAIL() << path;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  std::remove(empty.c_str());
  EXPECT_THROW(save_checkpoint(dir + "no_such_dir/x.ckpt", model, adam, TrainingProgress()), FileError);
}

TEST(Checkpoint, ExtraStateTooDeepForTheHeaderIsRefusedWhenSaving) {
  Sequential<double> model = small_model();
  Adam<double> adam(model.params());
  TrainingProgress p;
  nlohmann::json deep = 1;
  for (int i = 0; i < 300; ++i) deep = nlohmann::json::array({deep});
  p.extra = {{"deep", deep}};
  EXPECT_THROW(encode_checkpoint(model, adam, p), ConfigError);
  nlohmann::json fine = 1;
  for (int i = 0; i < 200; ++i) fine = nlohmann::json::array({fine});
  p.extra = {{"fine", fine}};
  Sequential<double> target = small_model();
  Adam<double> target_adam(target.params());
  EXPECT_EQ(decode_checkpoint(encode_checkpoint(model, adam, p), target, target_adam).extra, p.extra);
}
