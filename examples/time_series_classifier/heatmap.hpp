#pragma once
// Heatmaps of attention weights as PNG (Debian's libstb-dev stb_image_write.h) and CSV.
//
//   render_heatmap(m, cell, lo, hi)   (rows, cols) values -> RGB image, each value a cell x cell square coloured
//                                     with viridis from lo (dark purple) to hi (yellow); values are clamped
//   stack({a, b, ...}, gap)           images one under the other, gap white rows between, left aligned
//   write_png(path, image)            throws std::runtime_error naming the path when it cannot be written
//   write_csv(path, header, rows)     a CSV file of numbers with a header line
// The example plots, for one sequence: its input (features x steps), the attention map (query steps x key
// steps; heads averaged) and, with weighted pooling, the pooling weights (1 x steps), all aligned on time.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <seqattn/core/tensor.hpp>

#include "../plot/stb_image_write.hpp"

namespace tsc {

struct Image {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;  // (height, width, 3)
  std::uint8_t* pixel(int x, int y) { return rgb.data() + 3 * (static_cast<size_t>(y) * width + x); }
  const std::uint8_t* pixel(int x, int y) const { return rgb.data() + 3 * (static_cast<size_t>(y) * width + x); }
};

// Viridis, 9 samples of matplotlib's table, linearly interpolated. v in [0, 1].
inline std::array<std::uint8_t, 3> viridis(double v) {
  static const double table[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},   {44, 113, 142}, {33, 144, 141},
                                     {39, 173, 129}, {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  if (!(v >= 0)) v = 0;  // also NaN
  if (v > 1) v = 1;
  const double pos = v * 8;
  const int i = std::min(7, static_cast<int>(pos));
  const double f = pos - i;
  std::array<std::uint8_t, 3> c{};
  for (int k = 0; k < 3; ++k) c[static_cast<size_t>(k)] = static_cast<std::uint8_t>(std::lround(table[i][k] * (1 - f) + table[i + 1][k] * f));
  return c;
}

inline Image render_heatmap(const seqattn::Matrix<float>& m, int cell, double lo, double hi) {
  if (cell < 1 || m.rows() < 1 || m.cols() < 1) throw std::runtime_error("render_heatmap: empty matrix or cell < 1");
  Image img;
  img.width = static_cast<int>(m.cols()) * cell;
  img.height = static_cast<int>(m.rows()) * cell;
  img.rgb.resize(static_cast<size_t>(img.width) * img.height * 3);
  const double span = hi > lo ? hi - lo : 1.0;
  for (int r = 0; r < m.rows(); ++r)
    for (int c = 0; c < m.cols(); ++c) {
      const auto color = viridis((m(r, c) - lo) / span);
      for (int y = r * cell; y < (r + 1) * cell; ++y)
        for (int x = c * cell; x < (c + 1) * cell; ++x) std::copy(color.begin(), color.end(), img.pixel(x, y));
    }
  return img;
}

inline Image stack(const std::vector<Image>& parts, int gap) {
  Image out;
  for (const auto& p : parts) {
    out.width = std::max(out.width, p.width);
    out.height += p.height;
  }
  out.height += gap * std::max(0, static_cast<int>(parts.size()) - 1);
  out.rgb.assign(static_cast<size_t>(out.width) * out.height * 3, 255);
  int y0 = 0;
  for (const auto& p : parts) {
    for (int y = 0; y < p.height; ++y) std::copy(p.pixel(0, y), p.pixel(0, y) + 3 * p.width, out.pixel(0, y0 + y));
    y0 += p.height + gap;
  }
  return out;
}

inline void write_png(const std::string& path, const Image& img) {
  if (img.width < 1 || img.height < 1 ||
      !stbi_write_png(path.c_str(), img.width, img.height, 3, img.rgb.data(), img.width * 3))
    throw std::runtime_error(path + ": cannot write the PNG file");
}

inline void write_csv(const std::string& path, const std::string& header, const std::vector<std::vector<double>>& rows) {
  std::ofstream out(path);
  out << header << '\n';
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) out << (i ? "," : "") << row[i];
    out << '\n';
  }
  out.flush();
  if (!out) throw std::runtime_error(path + ": cannot write the CSV file");
}

}  // namespace tsc
