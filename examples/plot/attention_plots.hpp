#pragma once
// Attention figures (a Figure each: write it with png.hpp's write_png and svg.hpp's write_svg).
//
//   attention_heatmap(spec, &layout)   one attention map, (query steps, key steps):
//       title and subtitle (layer, head, sequence, classes: the caller's words)
//       the input series above the map, one line per channel, on the map's step axis: input step t is drawn at
//         the center of key cell t / steps_per_cell (steps_per_cell > 1 when the model pools steps before its
//         attention); a legend of the channels when there are several
//       optionally the pooling weights (one per key step) as bars between the series and the map
//       the map: key steps on x (left to right), query steps on y (top to bottom, as the rows of the matrix),
//         ticks every 1, 2, 5, 10, 20, 25, 50, ... steps, labels "key step" and "query step"; viridis
//       a color bar right of the map from lo (bottom, dark purple) to hi (top, yellow) with ticks
//   attention_heads(spec, &layout)     one small map per head of a multi-head layer, in a grid (up to 4 per row),
//                                      each titled "head h", one shared color bar (the largest weight of all)
// The layouts return where everything went, in pixels, and the axis transforms: the tests map pixels back to
// steps with them. Sizes: the map is about 560 px square, a head panel 250 px; text 13-20 px.

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "axes.hpp"
#include "colormap.hpp"
#include "figure.hpp"
#include "ticks.hpp"

namespace plot {

// A (rows, cols) grid of numbers, row-major.
struct Grid {
  int rows = 0, cols = 0;
  std::vector<double> values;
  Grid() = default;
  Grid(int r, int c, double fill = 0) : rows(r), cols(c), values(static_cast<size_t>(r) * static_cast<size_t>(c), fill) {}
  double& operator()(int r, int c) { return values[static_cast<size_t>(r) * static_cast<size_t>(cols) + static_cast<size_t>(c)]; }
  double operator()(int r, int c) const { return values[static_cast<size_t>(r) * static_cast<size_t>(cols) + static_cast<size_t>(c)]; }
  double max() const {
    double m = -std::numeric_limits<double>::infinity();
    for (double v : values)
      if (v > m) m = v;
    return m;
  }
};

struct HeatmapSpec {
  Grid map;                                 // (query steps, key steps) attention weights
  std::vector<std::vector<double>> series;  // input channels, each of input steps (may be empty: no series panel)
  std::vector<std::string> series_names;    // legend of the channels (default "channel c" when several)
  double steps_per_cell = 1;                // input steps per attention step
  std::vector<double> pooling;              // pooling weights over the key steps (empty: no pooling panel)
  std::string title, subtitle;
  double lo = 0;                                            // color bar bottom
  double hi = std::numeric_limits<double>::quiet_NaN();     // color bar top (NaN: the largest weight)
  std::string value_label = "attention weight";
};

struct HeatmapLayout {
  Box map, colorbar, series, pooling;  // series and pooling: w = 0 when absent
  int rows = 0, cols = 0;              // query steps, key steps
  double lo = 0, hi = 1;               // color scale
  // The axis transforms of the map: pixel -> step (floor of these is the cell), step -> pixel of the cell center.
  double key_at(double px) const { return (px - map.x) * cols / map.w; }
  double query_at(double py) const { return (py - map.y) * rows / map.h; }
  double x_of_key(double k) const { return map.x + (k + 0.5) * map.w / cols; }
  double y_of_query(double q) const { return map.y + (q + 0.5) * map.h / rows; }
};

namespace attention_detail {

inline void check(const Grid& g, const char* what) {
  if (g.rows < 1 || g.cols < 1 || g.values.size() != static_cast<size_t>(g.rows) * static_cast<size_t>(g.cols))
    throw std::invalid_argument(std::string(what) + ": expected a non-empty map with rows * cols values");
}

inline std::vector<Color> colors_of(const Grid& g, double lo, double hi) {
  std::vector<Color> colors;
  colors.reserve(g.values.size());
  const double span = hi > lo ? hi - lo : 1;
  for (double v : g.values) colors.push_back(viridis((v - lo) / span));
  return colors;
}

// The map's step ticks: labels at cell centers of every k-th step, below (x) and left (y) of the box.
inline void step_ticks_of(Figure& fig, const Box& box, int rows, int cols, double size, int about) {
  std::vector<std::pair<double, std::string>> xs, ys;
  for (int k : step_ticks(cols, about)) xs.emplace_back(box.x + (k + 0.5) * box.w / cols, std::to_string(k));
  for (int q : step_ticks(rows, about)) ys.emplace_back(box.y + (q + 0.5) * box.h / rows, std::to_string(q));
  ticks_bottom(fig, box, xs, size);
  ticks_left(fig, box, ys, size);
}

// "key step", or "key step (3 input steps each)" when the attention runs on pooled steps.
inline std::string key_axis_label(double steps_per_cell) {
  if (steps_per_cell == 1) return "key step";
  const bool whole = steps_per_cell == std::round(steps_per_cell);
  return "key step (" + tick_label(steps_per_cell, whole ? 1 : 0.1) + " input steps each)";
}

inline double top_of(double hi, const Grid& g) {
  if (std::isfinite(hi)) return hi;
  const double m = g.max();
  return m > 0 && std::isfinite(m) ? m : 1;
}

}  // namespace attention_detail

inline Figure attention_heatmap(const HeatmapSpec& spec, HeatmapLayout* out = nullptr) {
  using namespace attention_detail;
  check(spec.map, "attention_heatmap");
  if (!(spec.steps_per_cell > 0)) throw std::invalid_argument("attention_heatmap: steps_per_cell must be > 0");
  if (!spec.pooling.empty() && spec.pooling.size() != static_cast<size_t>(spec.map.cols))
    throw std::invalid_argument("attention_heatmap: expected one pooling weight per key step");
  HeatmapLayout L;
  L.rows = spec.map.rows;
  L.cols = spec.map.cols;
  L.lo = spec.lo;
  L.hi = top_of(spec.hi, spec.map);
  if (!(L.hi > L.lo)) L.hi = L.lo + 1;
  const double left = 92, right = 150, S = 560;  // margins and map size, pixels
  double y = 20;
  const double title_y = y + 22;
  y = title_y + (spec.subtitle.empty() ? 18 : 40);
  bool have_series = false;
  for (const auto& s : spec.series) have_series = have_series || !s.empty();
  if (have_series) {
    L.series = Box{left, y, S, 130};
    y += L.series.h + 16;
  }
  if (!spec.pooling.empty()) {
    L.pooling = Box{left, y, S, 56};
    y += L.pooling.h + 16;
  }
  L.map = Box{left, y, S, S * std::min(2.0, static_cast<double>(L.rows) / L.cols)};
  Figure fig(static_cast<int>(left + S + right), static_cast<int>(L.map.bottom() + 66));

  fig.text(left + S / 2, title_y, spec.title, 20, kText, Anchor::Middle);
  if (!spec.subtitle.empty()) fig.text(left + S / 2, title_y + 24, spec.subtitle, 14, kMuted, Anchor::Middle);

  // x ticks of the map, reused as vertical guides through the panels above it
  const auto key_ticks = step_ticks(L.cols, 10);
  const auto guides = [&](const Box& b) {
    for (int k : key_ticks) {
      const double px = std::round(L.x_of_key(k)) + 0.5;
      fig.line({{px, b.y}, {px, b.bottom()}}, kGrid, 1);
    }
  };

  if (have_series) {
    const Box& b = L.series;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto& s : spec.series)
      for (double v : s)
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    if (!(hi >= lo)) lo = 0, hi = 1;
    const auto range = nice_range(lo, hi, 4);
    const Scale sy{range.first, range.second, b.bottom() - 0.5, b.y + 0.5};
    const auto ticks = nice_ticks(range.first, range.second, 4);
    guides(b);
    grid_lines(fig, b, sy, ticks);
    for (size_t c = 0; c < spec.series.size(); ++c) {
      std::vector<Point> pts;
      for (size_t t = 0; t < spec.series[c].size(); ++t) {
        const double v = spec.series[c][t];
        if (!std::isfinite(v)) continue;
        pts.push_back({L.x_of_key((static_cast<double>(t) + 0.5) / spec.steps_per_cell - 0.5), sy(v)});
      }
      fig.line(std::move(pts), series_color(static_cast<int>(c)), 1.8);
    }
    fig.frame(b.x - 1, b.y - 1, b.w + 2, b.h + 2, kAxis);
    value_axis_left(fig, b, sy, ticks);
    fig.text(b.x - 62, b.y + b.h / 2, "input", 14, kText, Anchor::Middle, true);
    if (spec.series.size() > 1) {  // legend in the right margin, one channel a row
      for (size_t c = 0; c < spec.series.size() && c < 8; ++c) {
        const std::string name =
            c < spec.series_names.size() ? spec.series_names[c] : "channel " + std::to_string(c);
        const double ly = b.y + 10 + 15.5 * static_cast<double>(c);
        fig.line({{b.right() + 14, ly}, {b.right() + 32, ly}}, series_color(static_cast<int>(c)), 2.5);
        fig.text(b.right() + 38, ly + 4.5, name, 12);
      }
    }
  }

  if (!spec.pooling.empty()) {
    const Box& b = L.pooling;
    double top = 0;
    for (double v : spec.pooling)
      if (std::isfinite(v)) top = std::max(top, v);
    const auto range = nice_range(0, top > 0 ? top : 1, 2);
    const Scale sy{0, range.second, b.bottom(), b.y};
    guides(b);
    const double cw = b.w / L.cols;
    for (int k = 0; k < L.cols; ++k) {
      const double v = std::isfinite(spec.pooling[static_cast<size_t>(k)]) ? spec.pooling[static_cast<size_t>(k)] : 0;
      const double x0 = b.x + k * cw + (cw >= 4 ? cw * 0.12 : 0);
      fig.rect(x0, sy(v), b.x + (k + 1) * cw - (cw >= 4 ? cw * 0.12 : 0) - x0, b.bottom() - sy(v), series_color(0));
    }
    fig.frame(b.x - 1, b.y - 1, b.w + 2, b.h + 2, kAxis);
    value_axis_left(fig, b, sy, {0.0, range.second}, 12);
    fig.text(b.x - 62, b.y + b.h / 2, "pooling", 13, kText, Anchor::Middle, true);
  }

  fig.cells(L.map.x, L.map.y, L.map.w, L.map.h, L.rows, L.cols, colors_of(spec.map, L.lo, L.hi));
  fig.frame(L.map.x - 1, L.map.y - 1, L.map.w + 2, L.map.h + 2, kAxis);
  step_ticks_of(fig, L.map, L.rows, L.cols, kTickSize, 10);
  fig.text(L.map.x + L.map.w / 2, L.map.bottom() + 50, key_axis_label(spec.steps_per_cell), 14, kText, Anchor::Middle);
  fig.text(L.map.x - 62, L.map.y + L.map.h / 2, "query step", 14, kText, Anchor::Middle, true);

  L.colorbar = Box{L.map.right() + 22, L.map.y, 20, L.map.h};
  colorbar(fig, L.colorbar, L.lo, L.hi, spec.value_label);
  if (out) *out = L;
  return fig;
}

struct HeadsSpec {
  std::vector<Grid> heads;  // one (query steps, key steps) map per head
  std::string title, subtitle;
  double lo = 0;
  double hi = std::numeric_limits<double>::quiet_NaN();  // NaN: the largest weight of all heads
  std::string value_label = "attention weight";
  double steps_per_cell = 1;  // input steps per attention step (named in the x axis label only)
};

struct HeadsLayout {
  std::vector<Box> panels;  // head h's map
  Box colorbar;
  int rows = 0, cols = 0;   // steps of every map
  double lo = 0, hi = 1;
};

inline Figure attention_heads(const HeadsSpec& spec, HeadsLayout* out = nullptr) {
  using namespace attention_detail;
  if (spec.heads.empty()) throw std::invalid_argument("attention_heads: no heads");
  for (const auto& g : spec.heads) {
    check(g, "attention_heads");
    if (g.rows != spec.heads[0].rows || g.cols != spec.heads[0].cols)
      throw std::invalid_argument("attention_heads: every head's map must have the same size");
  }
  HeadsLayout L;
  L.rows = spec.heads[0].rows;
  L.cols = spec.heads[0].cols;
  L.lo = spec.lo;
  L.hi = std::isfinite(spec.hi) ? spec.hi : -std::numeric_limits<double>::infinity();
  if (!std::isfinite(spec.hi))
    for (const auto& g : spec.heads) L.hi = std::max(L.hi, top_of(spec.hi, g));
  if (!(L.hi > L.lo)) L.hi = L.lo + 1;
  const int n = static_cast<int>(spec.heads.size());
  const int per_row = n <= 4 ? n : static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int grid_rows = (n + per_row - 1) / per_row;
  const double P = n <= 2 ? 300 : 250;  // panel width
  const double ph = P * std::min(2.0, static_cast<double>(L.rows) / L.cols);
  const double left = 84, gap_x = 58, gap_y = 74, top = 20 + 22 + (spec.subtitle.empty() ? 18 : 40) + 26;
  const double grid_w = per_row * P + (per_row - 1) * gap_x;
  const double right = 150;
  Figure fig(static_cast<int>(std::max(left + grid_w + right, 640.0)),
             static_cast<int>(top + grid_rows * ph + (grid_rows - 1) * gap_y + 66));
  const double center = left + grid_w / 2;
  fig.text(center, 42, spec.title, 20, kText, Anchor::Middle);
  if (!spec.subtitle.empty()) fig.text(center, 66, spec.subtitle, 14, kMuted, Anchor::Middle);
  for (int h = 0; h < n; ++h) {
    const int gr = h / per_row, gc = h % per_row;
    const Box b{left + gc * (P + gap_x), top + gr * (ph + gap_y), P, ph};
    L.panels.push_back(b);
    fig.text(b.x + b.w / 2, b.y - 10, "head " + std::to_string(h), 15, kText, Anchor::Middle);
    fig.cells(b.x, b.y, b.w, b.h, L.rows, L.cols, colors_of(spec.heads[static_cast<size_t>(h)], L.lo, L.hi));
    fig.frame(b.x - 1, b.y - 1, b.w + 2, b.h + 2, kAxis);
    step_ticks_of(fig, b, L.rows, L.cols, 12, 5);
  }
  const double grid_h = grid_rows * ph + (grid_rows - 1) * gap_y;
  fig.text(center, top + grid_h + 50, key_axis_label(spec.steps_per_cell), 14, kText, Anchor::Middle);
  fig.text(left - 56, top + grid_h / 2, "query step", 14, kText, Anchor::Middle, true);
  L.colorbar = Box{left + grid_w + 22, top, 20, grid_h};
  colorbar(fig, L.colorbar, L.lo, L.hi, spec.value_label);
  if (out) *out = L;
  return fig;
}

}  // namespace plot
