#pragma once
// The example's figures, drawn with the plotting headers of the examples (examples/plot/), each as PNG and SVG:
//
//   write_attention_figures(base, maps, png)   base.png/.svg: the attention heatmap of one test sequence (query
//                                              steps x key steps, heads averaged) under its input series and, with
//                                              weighted pooling, its pooling weights; base_heads.png/.svg: one map
//                                              per head when the layer has several
//   write_training_curves(base, history, title, subtitle, note, png)
//                                              base.png/.svg: loss and accuracy per epoch (training, validation
//                                              when held out, test when evaluated), base.csv: the same numbers
//   png_unavailable()                          "" when PNG figures can be drawn, else why not (no DejaVu Sans font:
//                                              plot/font.hpp lists the paths tried); the SVG files need no font
//   attention_layer_name(config)               "MultiHeadAttention", "SeqSelfAttention (additive, width 8), block 1
//                                              of 2" and the like: the layer the maps show (the first block's)
//   attention_layer_title(config)              the same with the heads: "MultiHeadAttention, 4 heads"
// `png` false: SVG only (the example prints png_unavailable() once, before training).

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../plot/attention_plots.hpp"
#include "../plot/png.hpp"
#include "../plot/svg.hpp"
#include "../plot/training_curves.hpp"
#include "heatmap.hpp"  // write_csv
#include "model.hpp"
#include "train.hpp"

namespace tsc {

inline std::string png_unavailable() {
  try {
    plot::default_font();
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

// The layer whose attention the maps show (the first block's), as a figure title names it.
inline std::string attention_layer_name(const ModelConfig& c) {
  std::string name = c.attention == AttentionKind::MultiHead ? "MultiHeadAttention" : "SeqSelfAttention (additive";
  if (c.attention == AttentionKind::SelfAttention)
    name += c.width > 0 ? ", width " + std::to_string(c.width) + ")" : ")";
  return name + (c.blocks > 1 ? ", block 1 of " + std::to_string(c.blocks) : "");
}

// The model's attention, as the training curves name it: "MultiHeadAttention, 4 heads".
inline std::string attention_layer_title(const ModelConfig& c) {
  const Index heads = c.attention == AttentionKind::MultiHead ? c.heads : 1;
  return attention_layer_name(c) + (heads > 1 ? ", " + std::to_string(heads) + " heads" : "");
}

// What the figures of one test sequence show.
struct SequenceMaps {
  seqattn::Matrix<float> input;                 // (features, valid input steps)
  std::vector<seqattn::Matrix<float>> heads;    // (attention steps, attention steps) per head (one when single-head)
  std::vector<float> pooling;                   // weighted pooling over the attention steps (empty: none)
  Index steps_per_cell = 1;                     // input steps per attention step (--downsample)
  Index index = 0;                              // in the test set
  std::string layer, dataset, true_class, predicted_class;
  std::vector<std::string> channel_names;       // default "channel c"
};

inline plot::Grid to_grid(const seqattn::Matrix<float>& m) {
  plot::Grid g(static_cast<int>(m.rows()), static_cast<int>(m.cols()));
  for (Index r = 0; r < m.rows(); ++r)
    for (Index c = 0; c < m.cols(); ++c) g(static_cast<int>(r), static_cast<int>(c)) = m(r, c);
  return g;
}

inline void write_figure(const std::string& base, const plot::Figure& fig, bool png) {
  if (png) plot::write_png(base + ".png", fig);
  plot::write_svg(base + ".svg", fig);
}

inline void write_attention_figures(const std::string& base, const SequenceMaps& s, bool png) {
  const std::string sequence = "test sequence " + std::to_string(s.index);
  const std::string subtitle = (s.dataset.empty() ? "" : s.dataset + "  \xC2\xB7  ") + "true class " + s.true_class +
                               ", predicted " + s.predicted_class +
                               (s.true_class == s.predicted_class ? " (right)" : " (wrong)");
  plot::HeatmapSpec spec;
  seqattn::Matrix<float> mean = s.heads.at(0);
  for (size_t h = 1; h < s.heads.size(); ++h) mean += s.heads[h];
  mean /= static_cast<float>(s.heads.size());
  spec.map = to_grid(mean);
  for (Index f = 0; f < s.input.rows(); ++f) {
    std::vector<double> channel(static_cast<size_t>(s.input.cols()));
    for (Index t = 0; t < s.input.cols(); ++t) channel[static_cast<size_t>(t)] = s.input(f, t);
    spec.series.push_back(std::move(channel));
  }
  spec.series_names = s.channel_names;
  spec.steps_per_cell = static_cast<double>(s.steps_per_cell);
  spec.pooling.assign(s.pooling.begin(), s.pooling.end());
  spec.title = s.layer + (s.heads.size() > 1 ? ", mean of " + std::to_string(s.heads.size()) + " heads" : "") +
               "  \xE2\x80\x94  " + sequence;
  spec.subtitle = subtitle;
  write_figure(base, plot::attention_heatmap(spec), png);
  if (s.heads.size() > 1) {
    plot::HeadsSpec heads;
    for (const auto& h : s.heads) heads.heads.push_back(to_grid(h));
    heads.title = s.layer + ", " + std::to_string(s.heads.size()) + " heads  \xE2\x80\x94  " + sequence;
    heads.subtitle = subtitle;
    heads.steps_per_cell = static_cast<double>(s.steps_per_cell);
    write_figure(base + "_heads", plot::attention_heads(heads), png);
  }
}

inline void write_training_curves(const std::string& base, const std::vector<EpochResult>& history,
                                  const std::string& title, const std::string& subtitle, const std::string& note,
                                  bool png) {
  if (history.empty()) return;
  plot::CurvesSpec spec;
  spec.title = title;
  spec.subtitle = subtitle;
  spec.note = note;
  plot::Curve training{"training", {}, {}}, validation{"validation", {}, {}}, test{"test", {}, {}};
  bool has_validation = false, has_test = false;
  for (const EpochResult& r : history) {
    training.loss.push_back(r.loss);
    training.accuracy.push_back(r.accuracy);
    validation.loss.push_back(r.validation_loss);
    validation.accuracy.push_back(r.validation_accuracy);
    test.loss.push_back(r.test_loss);
    test.accuracy.push_back(r.test_accuracy);
    has_validation = has_validation || r.has_validation;
    has_test = has_test || r.has_test;
  }
  spec.curves.push_back(training);
  if (has_validation) spec.curves.push_back(validation);
  if (has_test) spec.curves.push_back(test);
  write_figure(base, plot::training_curves(spec), png);
  std::string header = "epoch,training_loss,training_accuracy";  // and the columns of what was measured
  if (has_validation) header += ",validation_loss,validation_accuracy";
  if (has_test) header += ",test_loss,test_accuracy";
  std::vector<std::vector<double>> rows;
  for (size_t e = 0; e < history.size(); ++e) {
    const EpochResult& r = history[e];
    rows.push_back({static_cast<double>(e + 1), r.loss, r.accuracy});
    if (has_validation) rows.back().insert(rows.back().end(), {r.validation_loss, r.validation_accuracy});
    if (has_test) rows.back().insert(rows.back().end(), {r.test_loss, r.test_accuracy});
  }
  write_csv(base + ".csv", header, rows);
}

}  // namespace tsc
