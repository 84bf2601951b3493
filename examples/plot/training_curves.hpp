#pragma once
// Training curves: loss (left panel) and accuracy (right panel) per epoch, one line per curve (training, test,
// validation, ...) in the colors of series_color (blue, orange, green), with a dot at every epoch when there are
// at most 40 epochs. A shared legend under the title, an optional note under the panels.
//   CurvesSpec spec; spec.title = "...";
//   spec.curves.push_back({"training", loss_per_epoch, accuracy_per_epoch});   epoch e is element e - 1
//   Figure fig = training_curves(spec, &layout);
// x: epochs 1..n. Loss axis from 0 to a nice value above the largest loss; accuracy axis 0 to 1.
// Sizes: 1000 x 442 px (466 with a note); each plot area 380 x 280 px.

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

struct Curve {
  std::string name;
  std::vector<double> loss, accuracy;  // per epoch (either may be empty)
};

struct CurvesSpec {
  std::string title, subtitle;
  std::string note;  // a line of small print under the panels (how the numbers were measured), may be empty
  std::vector<Curve> curves;
};

struct CurvesLayout {
  Box loss, accuracy;    // the plot areas
  Scale epoch_x_loss, epoch_x_accuracy, loss_y, accuracy_y;
  int epochs = 0;
};

inline Figure training_curves(const CurvesSpec& spec, CurvesLayout* out = nullptr) {
  CurvesLayout L;
  double top_loss = 0;
  for (const auto& c : spec.curves) {
    L.epochs = std::max<int>(L.epochs, static_cast<int>(std::max(c.loss.size(), c.accuracy.size())));
    for (double v : c.loss)
      if (std::isfinite(v)) top_loss = std::max(top_loss, v);
  }
  if (L.epochs < 1) throw std::invalid_argument("training_curves: no epochs");
  const double W = 380, H = 280, left = 84, between = 120, top = spec.subtitle.empty() ? 96 : 118;
  Figure fig(static_cast<int>(left + 2 * W + between + 40), static_cast<int>(top + H + (spec.note.empty() ? 66 : 90)));
  const double center = fig.width / 2.0;
  fig.text(center, 42, spec.title, 20, kText, Anchor::Middle);
  if (!spec.subtitle.empty()) fig.text(center, 66, spec.subtitle, 14, kMuted, Anchor::Middle);
  std::vector<LegendEntry> entries;
  for (size_t i = 0; i < spec.curves.size(); ++i) entries.push_back({spec.curves[i].name, series_color(static_cast<int>(i))});
  double legend_w = 0;
  for (const auto& e : entries) legend_w += 28 + text_width(e.name, 14) + 20;
  legend(fig, center - (legend_w - 20) / 2, top - 22, entries, 14);

  L.loss = Box{left, top, W, H};
  L.accuracy = Box{left + W + between, top, W, H};
  const double e0 = L.epochs == 1 ? 0.5 : 1, e1 = L.epochs == 1 ? 1.5 : L.epochs;
  const double pad = 8;  // pixels between the first/last epoch and the frame
  L.epoch_x_loss = Scale{e0, e1, L.loss.x + pad, L.loss.right() - pad};
  L.epoch_x_accuracy = Scale{e0, e1, L.accuracy.x + pad, L.accuracy.right() - pad};
  const double loss_hi = nice_range(0, top_loss > 0 ? top_loss : 1, 5).second;
  L.loss_y = Scale{0, loss_hi, L.loss.bottom() - pad, L.loss.y + pad};
  L.accuracy_y = Scale{0, 1, L.accuracy.bottom() - pad, L.accuracy.y + pad};

  std::vector<double> epoch_ticks;
  for (double t : nice_ticks(1, std::max(1, L.epochs), 6))
    if (t >= 1 && std::abs(t - std::round(t)) < 1e-9) epoch_ticks.push_back(t);
  if (epoch_ticks.empty() || epoch_ticks.front() != 1) epoch_ticks.insert(epoch_ticks.begin(), 1);
  if (epoch_ticks.size() > 1 && L.epoch_x_loss(epoch_ticks[1]) - L.epoch_x_loss(1) < 24)
    epoch_ticks.erase(epoch_ticks.begin());  // 1 and 2 crowded: keep the nice ones

  const auto panel = [&](const Box& b, const Scale& x, const Scale& y, const std::vector<double>& yticks,
                         const char* label, bool loss) {
    grid_lines(fig, b, y, yticks);
    for (size_t i = 0; i < spec.curves.size(); ++i) {
      const auto& v = loss ? spec.curves[i].loss : spec.curves[i].accuracy;
      std::vector<Point> pts;
      for (size_t e = 0; e < v.size(); ++e)
        if (std::isfinite(v[e])) pts.push_back({x(static_cast<double>(e + 1)), y(v[e])});
      const Color c = series_color(static_cast<int>(i));
      if (L.epochs <= 40)
        for (const auto& p : pts) fig.rect(p.x - 2.5, p.y - 2.5, 5, 5, c);
      fig.line(std::move(pts), c, 2);
    }
    fig.frame(b.x - 1, b.y - 1, b.w + 2, b.h + 2, kAxis);
    value_axis_left(fig, b, y, yticks);
    value_axis_bottom(fig, b, x, epoch_ticks);
    fig.text(b.x + b.w / 2, b.bottom() + 50, "epoch", 14, kText, Anchor::Middle);
    fig.text(b.x - 58, b.y + b.h / 2, label, 14, kText, Anchor::Middle, true);
  };
  panel(L.loss, L.epoch_x_loss, L.loss_y, nice_ticks(0, loss_hi, 5), "loss", true);
  panel(L.accuracy, L.epoch_x_accuracy, L.accuracy_y, nice_ticks(0, 1, 5), "accuracy", false);
  if (!spec.note.empty()) fig.text(center, top + H + 78, spec.note, 12, kMuted, Anchor::Middle);
  if (out) *out = L;
  return fig;
}

}  // namespace plot
