// Data-parallel training on MPI (distributed/mpi.hpp): the time-series classifier of examples/time_series_classifier
// trained on several processes, with results that do not depend on how many took part.
//
//   mpirun -np 2 ./distributed_training                                    the synthetic multivariate task
//   mpirun -np 2 ./distributed_training --ucr ../shared/data/ucr/JapaneseVowels/JapaneseVowels   real data
//   mpirun -np 64 --hostfile hosts ./distributed_training ...              a cluster (docs/pages/distributed.md)
//   options: --epochs N (8), --batch N (32 global), --chunk N (8), --checkpoint PATH (written after every epoch),
//            --resume PATH, --seed N, --d-model N (32; 100 gives a model 10 times larger), --quiet
//
// Every rank builds the same model (rank 0's weights are broadcast anyway), reads only its chunks of each global
// batch (the `load` lambda touches no other sample) and steps its own Adam after dp.step, which left the same
// summed gradient on every rank. Rank 0 prints per epoch the training loss and accuracy, the test loss and
// accuracy (dp.evaluate, split over the ranks the same way), the throughput and the bytes each rank exchanged per
// step. The final line's weight checksum is the same for any number of processes (try -np 1, 2, 3).
// The changes to a single-process loop are the lines marked "distributed:".
#include <seqattn/seqattn.hpp>
#include <seqattn/distributed/checkpoint.hpp>  // distributed:
#include <seqattn/distributed/mpi.hpp>         // distributed:

#include "time_series_classifier/data.hpp"
#include "time_series_classifier/model.hpp"
#include "time_series_classifier/ucr.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

using namespace seqattn;

namespace {

struct Args {
  std::string ucr, checkpoint, resume;
  Index epochs = 8, batch = 32, chunk = 8, d_model = 32;
  std::uint64_t seed = 42;
  bool quiet = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("distributed_training: missing value after " + k);
      return argv[++i];
    };
    if (k == "--ucr") a.ucr = next();
    else if (k == "--checkpoint") a.checkpoint = next();
    else if (k == "--resume") a.resume = next();
    else if (k == "--epochs") a.epochs = std::stol(next());
    else if (k == "--batch") a.batch = std::stol(next());
    else if (k == "--chunk") a.chunk = std::stol(next());
    else if (k == "--d-model") a.d_model = std::stol(next());
    else if (k == "--seed") a.seed = std::stoull(next());
    else if (k == "--quiet") a.quiet = true;
    else throw std::runtime_error("distributed_training: unknown option " + k + " (see the file's comment)");
  }
  return a;
}

// Correct predictions among the sequences of a chunk: logits (B, 1, classes).
std::pair<std::int64_t, std::int64_t> correct(const Tensor3<float>& y, const std::vector<int>& labels, const Mask&) {
  std::int64_t hits = 0;
  for (Index b = 0; b < y.dimension(0); ++b) {
    Index best = 0;
    for (Index c = 1; c < y.dimension(2); ++c)
      if (y(b, 0, c) > y(b, 0, best)) best = c;
    hits += best == labels[static_cast<size_t>(b)];
  }
  return {hits, y.dimension(0)};
}

int run(const MpiSession& session, const Args& a) {
  MpiCommunicator comm(MpiOptions().timeout_seconds(120));  // distributed:
  tsc::Dataset train, test;
  if (a.ucr.empty()) {
    train = tsc::make_task(tsc::Task::Multivariate, 1024, 48, 1);
    test = tsc::make_task(tsc::Task::Multivariate, 256, 48, 2);
  } else {
    train = tsc::load_ucr(a.ucr + "_TRAIN.ts");
    test = tsc::load_ucr(a.ucr + "_TEST.ts", train.class_names, a.ucr + "_TRAIN.ts");
  }
  tsc::standardize(train, {&train, &test});
  tsc::ModelConfig config;
  config.features = train.features();
  config.classes = train.classes();
  config.d_model = a.d_model;
  config.heads = 4;
  config.pooling = tsc::Pooling::Mean;
  config.dropout = 0.1;
  config.seed = a.seed;
  tsc::Classifier classifier(config);
  Sequential<float>& model = classifier.net();
  DataParallel<float, MpiCommunicator> dp(comm, model,  // distributed:
                                          DataParallelOptions().chunk_size(a.chunk).seed(a.seed));
  Adam<float> adam(model.params(), AdamOptions().lr(3e-3));
  SoftmaxCrossEntropy<float> loss;
  TrainingProgress progress;
  if (!a.resume.empty()) progress = load_checkpoint(dp, a.resume, model, adam);  // distributed:
  const bool talk = session.rank() == 0 && !a.quiet;
  if (talk)
    std::printf("%d ranks, %ld training and %ld test sequences of up to %ld steps, %ld features, %ld classes; global "
                "batch %ld in chunks of %ld\n",
                comm.size(), long(train.size()), long(test.size()), long(train.steps()), long(train.features()),
                long(train.classes()), long(a.batch), long(a.chunk));

  // The chunk at positions [begin, end) of `order`, from `offset` on: only those samples are read.
  auto loader = [](const tsc::Dataset& d, const std::vector<Index>& order, Index offset) {
    return [&d, &order, offset](BatchSpan chunk) {
      Batch<float, std::vector<int>> b;
      tsc::make_batch(d, order, offset + chunk.begin, offset + chunk.end, b.x, b.mask, b.target);
      return b;
    };
  };
  std::vector<Index> test_order(static_cast<size_t>(test.size()));
  for (Index i = 0; i < test.size(); ++i) test_order[static_cast<size_t>(i)] = i;
  double train_seconds = 0;
  std::int64_t samples = 0, steps = 0;
  std::uint64_t bytes = 0;
  const Index batches = batch_count(train.size(), a.batch);
  for (Index epoch = progress.epoch; epoch < a.epochs; ++epoch) {
    const std::vector<Index> order = epoch_order(train.size(), a.seed, epoch);  // distributed: the same everywhere
    double loss_sum = 0;
    std::int64_t hits = 0, seen = 0;
    const auto start = std::chrono::steady_clock::now();
    for (Index b = epoch == progress.epoch ? progress.batch : 0; b < batches; ++b) {
      const BatchSpan span = batch_span(train.size(), a.batch, b);
      const StepStats s = dp.step(loss, span.size(), loader(train, order, span.begin), correct);  // distributed:
      adam.step();
      loss_sum += s.loss * static_cast<double>(s.samples);
      hits += s.correct;
      seen += s.counted;
      bytes += s.bytes_sent + s.bytes_received;
      ++steps;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    train_seconds += seconds;
    samples += seen;
    const StepStats t = dp.evaluate(loss, test.size(), loader(test, test_order, 0), correct);  // distributed:
    if (talk)
      std::printf("epoch %2ld  train loss %.4f acc %.3f  test loss %.4f acc %.3f  %.0f sequences/s\n", long(epoch + 1),
                  seen ? loss_sum / static_cast<double>(seen) : 0.0, seen ? double(hits) / double(seen) : 0.0, t.loss,
                  t.accuracy(), static_cast<double>(seen) / seconds);
    if (!a.checkpoint.empty()) {
      TrainingProgress p;
      p.epoch = epoch + 1;
      p.global_step = dp.step_number();
      save_checkpoint(dp, a.checkpoint, model, adam, p);  // distributed: rank 0 writes, atomically
    }
    progress.batch = 0;
  }
  std::uint64_t checksum = 1469598103934665603ULL;  // FNV-1a over the weights' bytes
  for (const auto& p : model.params()) {
    const auto* bytes_of = reinterpret_cast<const unsigned char*>(p.value);
    for (Index i = 0; i < p.size() * Index(sizeof(float)); ++i) checksum = (checksum ^ bytes_of[i]) * 1099511628211ULL;
  }
  std::size_t parameters = 0;
  for (const auto& p : model.params()) parameters += static_cast<std::size_t>(p.size());
  if (session.rank() == 0)
    std::printf("%zu parameters\n", parameters);
  if (session.rank() == 0)
    std::printf("%d ranks: %.1f training sequences/s, %.0f bytes exchanged per step and rank, weight checksum %016llx\n",
                comm.size(), train_seconds > 0 ? static_cast<double>(samples) / train_seconds : 0.0,
                steps ? static_cast<double>(bytes) / static_cast<double>(steps) : 0.0,
                static_cast<unsigned long long>(checksum));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession session(&argc, &argv);  // distributed:
  set_num_threads(1);                // one core per rank
  try {
    return run(session, parse(argc, argv));
  } catch (const std::exception& e) {
    session.abort(1, e.what());  // distributed: ends every rank instead of leaving them waiting
  }
}
