// The program behind the MPI tests (tests/mpi/CMakeLists.txt): trains a small model data-parallel on a synthetic
// task with variable lengths (masks) and an uneven last batch, and writes the final weights (raw bytes of every
// parameter and buffer) from rank 0, so that runs on 1..4 ranks and a run without MPI can be compared bit for bit.
//
//   mpi_training --model NAME --out FILE [--local] [--epochs E] [--batch B] [--chunk C]
//                [--checkpoint PATH --stop-after S] [--resume PATH]
//                [--fault throw|kill|hang --fault-rank R --fault-step S] [--timeout SECONDS]
//   NAME: dense (Dense, masked mean pooling), attention (MultiHeadAttention with attention and qkv dropout, Dropout,
//   LayerNorm), transformer (TransformerEncoderBlock with dropout), batchnorm (Conv1D, BatchNorm: buffers).
//   --local: one process through LocalCommunicator, without MPI (the single-process reference).
//   --checkpoint PATH --stop-after S: save a checkpoint after step S and exit 0 (a job "interrupted" there);
//   --resume PATH: continue from it. Exit codes: 0 done, 3 DistributedError caught (the job ended cleanly),
//   1 other errors; a hang or kill is ended by mpirun / session.abort.
#include <seqattn/seqattn.hpp>
#include <seqattn/distributed/checkpoint.hpp>
#include <seqattn/distributed/data_parallel.hpp>
#include <seqattn/distributed/mpi.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace seqattn;

namespace {

constexpr Index kFeatures = 3, kClasses = 3, kMaxSteps = 12, kSamples = 45;

struct Args {
  std::string model = "dense", out, checkpoint, resume, fault;
  bool local = false;
  Index epochs = 2, batch = 16, chunk = 4, stop_after = -1, fault_rank = 1, fault_step = 2;
  double timeout = 60;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + k);
      return argv[++i];
    };
    if (k == "--model") a.model = value();
    else if (k == "--out") a.out = value();
    else if (k == "--local") a.local = true;
    else if (k == "--epochs") a.epochs = std::stol(value());
    else if (k == "--batch") a.batch = std::stol(value());
    else if (k == "--chunk") a.chunk = std::stol(value());
    else if (k == "--checkpoint") a.checkpoint = value();
    else if (k == "--stop-after") a.stop_after = std::stol(value());
    else if (k == "--resume") a.resume = value();
    else if (k == "--fault") a.fault = value();
    else if (k == "--fault-rank") a.fault_rank = std::stol(value());
    else if (k == "--fault-step") a.fault_step = std::stol(value());
    else if (k == "--timeout") a.timeout = std::stod(value());
    else throw std::runtime_error("unknown option " + k);
  }
  return a;
}

// Sample i: a noisy wave whose class sets its shape; length 5..12 steps.
struct Dataset {
  std::vector<std::vector<float>> series;  // (length * kFeatures)
  std::vector<int> labels;
};
Dataset make_dataset() {
  Rng rng(99);
  Dataset d;
  for (Index i = 0; i < kSamples; ++i) {
    const int label = static_cast<int>(rng.below(kClasses));
    const Index length = 5 + static_cast<Index>(rng.below(kMaxSteps - 5 + 1));
    std::vector<float> s;
    for (Index t = 0; t < length; ++t)
      for (Index f = 0; f < kFeatures; ++f)
        s.push_back(static_cast<float>(std::sin(0.7 * double(t) * (label + 1) + double(f)) + rng.normal(0, 0.3)));
    d.series.push_back(s);
    d.labels.push_back(label);
  }
  return d;
}

Sequential<float> make_model(const std::string& name) {
  manual_seed(1234);
  Sequential<float> m(kFeatures);
  if (name == "dense") {
    m.add<Dense<float>>(8, Activation::Tanh);
    m.add<GlobalAvgPool<float>>();
    m.add<Dense<float>>(kClasses);
  } else if (name == "attention") {
    m.add<Dense<float>>(8);
    m.add<MultiHeadAttention<float>>(2, MultiHeadAttentionOptions().attention_dropout(0.2).qkv_dropout(0.1));
    m.add<Dropout<float>>(0.2);
    m.add<LayerNorm<float>>();
    m.add<GlobalAvgPool<float>>();
    m.add<Dense<float>>(kClasses);
  } else if (name == "transformer") {
    m.add<Dense<float>>(8);
    m.add<TransformerEncoderBlock<float>>(2, 16, TransformerEncoderOptions().dropout(0.1).attention_dropout(0.1));
    m.add<GlobalAvgPool<float>>();
    m.add<Dense<float>>(kClasses);
  } else if (name == "batchnorm") {
    m.add<Dense<float>>(8, Activation::ReLU);
    m.add<BatchNorm<float>>();
    m.add<GlobalAvgPool<float>>();
    m.add<Dense<float>>(kClasses);
  } else {
    throw std::runtime_error("unknown model " + name);
  }
  return m;
}

void write_weights(Sequential<float>& model, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  for (const auto& list : {model.params(), model.buffers()})
    for (const auto& p : list) out.write(reinterpret_cast<const char*>(p.value), std::streamsize(p.size() * 4));
  if (!out) throw std::runtime_error("cannot write " + path);
}

template <class Comm>
int train(Comm& comm, const Args& a) {
  const Dataset data = make_dataset();
  Sequential<float> model = make_model(a.model);
  DataParallel<float, Comm> dp(comm, model, DataParallelOptions().chunk_size(a.chunk).seed(7));
  Adam<float> adam(model.params(), AdamOptions().lr(1e-2));
  SoftmaxCrossEntropy<float> loss;
  TrainingProgress progress;
  if (!a.resume.empty()) progress = load_checkpoint(dp, a.resume, model, adam);
  const Index batches = batch_count(kSamples, a.batch);
  for (Index epoch = progress.epoch; epoch < a.epochs; ++epoch) {
    const std::vector<Index> order = epoch_order(kSamples, 7, epoch);
    for (Index b = (epoch == progress.epoch ? progress.batch : 0); b < batches; ++b) {
      const BatchSpan span = batch_span(kSamples, a.batch, b);
      const std::int64_t step = dp.step_number();
      auto load = [&](BatchSpan chunk) {  // the chunk's samples, padded to its longest
        if (a.fault == "throw" && comm.rank() == a.fault_rank && step == a.fault_step)
          throw std::runtime_error("injected failure");
        if (a.fault == "kill" && comm.rank() == a.fault_rank && step == a.fault_step) std::raise(SIGKILL);
        if (a.fault == "hang" && comm.rank() == a.fault_rank && step == a.fault_step)
          std::this_thread::sleep_for(std::chrono::seconds(3600));
        Batch<float, std::vector<int>> batch;
        std::vector<Index> lengths;
        Index T = 1;
        for (Index j = chunk.begin; j < chunk.end; ++j) {
          const auto& s = data.series[static_cast<size_t>(order[static_cast<size_t>(span.begin + j)])];
          T = std::max(T, static_cast<Index>(s.size()) / kFeatures);
        }
        batch.x.resize(chunk.size(), T, kFeatures);
        batch.x.setZero();
        for (Index j = chunk.begin; j < chunk.end; ++j) {
          const Index i = order[static_cast<size_t>(span.begin + j)];
          const auto& s = data.series[static_cast<size_t>(i)];
          std::copy(s.begin(), s.end(), batch.x.data() + (j - chunk.begin) * T * kFeatures);
          lengths.push_back(static_cast<Index>(s.size()) / kFeatures);
          batch.target.push_back(data.labels[static_cast<size_t>(i)]);
        }
        batch.mask = Mask::from_lengths(lengths);
        return batch;
      };
      const StepStats s = dp.step(loss, span.size(), load);
      adam.step();
      if (comm.rank() == 0)
        std::printf("epoch %ld batch %ld step %ld: loss %.9g over %ld units, %lu bytes sent\n", long(epoch), long(b),
                    long(step), s.loss, long(s.count), static_cast<unsigned long>(s.bytes_sent));
      if (a.stop_after >= 0 && dp.step_number() == a.stop_after) {
        TrainingProgress p;
        p.epoch = b + 1 < batches ? epoch : epoch + 1;
        p.batch = b + 1 < batches ? b + 1 : 0;
        p.global_step = dp.step_number();
        save_checkpoint(dp, a.checkpoint, model, adam, p);
        return 0;
      }
    }
  }
  if (comm.rank() == 0 && !a.out.empty()) write_weights(model, a.out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_training: %s\n", e.what());
    return 1;
  }
  if (args.local) {
    try {
      LocalCommunicator comm;
      return train(comm, args);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mpi_training: %s\n", e.what());
      return 1;
    }
  }
  MpiSession session(&argc, &argv);
  try {
    MpiCommunicator comm(MpiOptions().timeout_seconds(args.timeout));
    return train(comm, args);
  } catch (const DistributedError& e) {
    const std::string what = e.what();
    if (what.find("timed out") != std::string::npos) session.abort(4, what);  // a collective is half done
    std::fprintf(stderr, "[rank %d] DistributedError: %s\n", session.rank(), e.what());
    return 3;
  } catch (const std::exception& e) {
    session.abort(1, e.what());
  }
}
