#pragma once
// The raster backend: a Figure (figure.hpp) drawn into RGB pixels and written as PNG (stb_image_write.h).
//   Raster r = rasterize(fig)             fig.width x fig.height pixels; text with default_font() (font.hpp)
//   Raster r = rasterize(fig, font)       with another font
//   write_png(path, fig)                  rasterize + write; std::runtime_error naming the path when it cannot
//   write_png(path, raster)
// Filled rectangles and cells snap to whole pixels (no seams between cells); polylines and text are
// antialiased (coverage blended over what is below, in drawing order).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "figure.hpp"
#include "font.hpp"

#include "stb_image_write.hpp"

namespace plot {

struct Raster {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;  // (height, width, 3)
  Color at(int x, int y) const {
    const std::uint8_t* p = rgb.data() + 3 * (static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x));
    return Color{p[0], p[1], p[2]};
  }
  // color over the pixel with coverage alpha in [0, 1]; outside the raster: nothing
  void blend(int x, int y, Color c, double alpha) {
    if (x < 0 || y < 0 || x >= width || y >= height || !(alpha > 0)) return;
    if (alpha > 1) alpha = 1;
    std::uint8_t* p = rgb.data() + 3 * (static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x));
    const std::uint8_t src[3] = {c.r, c.g, c.b};
    for (int k = 0; k < 3; ++k) p[k] = static_cast<std::uint8_t>(std::lround(p[k] * (1 - alpha) + src[k] * alpha));
  }
};

namespace png_detail {

inline int snap(double v) { return static_cast<int>(std::lround(v)); }

inline void fill(Raster& r, int x0, int y0, int x1, int y1, Color c) {
  x0 = std::max(0, x0), y0 = std::max(0, y0), x1 = std::min(r.width, x1), y1 = std::min(r.height, y1);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) r.blend(x, y, c, 1);
}

// Coverage of every pixel by the polyline (distance of the pixel center to the nearest segment against half the
// width, a one-pixel ramp), kept as the maximum over segments so joints are not blended twice.
inline void draw(Raster& r, const Polyline& p) {
  if (p.points.empty()) return;
  const double half = std::max(0.5, p.width / 2);
  double minx = p.points[0].x, maxx = minx, miny = p.points[0].y, maxy = miny;
  for (const auto& q : p.points) {
    minx = std::min(minx, q.x), maxx = std::max(maxx, q.x), miny = std::min(miny, q.y), maxy = std::max(maxy, q.y);
  }
  const int bx0 = std::max(0, static_cast<int>(std::floor(minx - half - 1)));
  const int by0 = std::max(0, static_cast<int>(std::floor(miny - half - 1)));
  const int bx1 = std::min(r.width, static_cast<int>(std::ceil(maxx + half + 1)));
  const int by1 = std::min(r.height, static_cast<int>(std::ceil(maxy + half + 1)));
  if (bx1 <= bx0 || by1 <= by0) return;
  const int bw = bx1 - bx0;
  std::vector<float> cover(static_cast<size_t>(bw) * static_cast<size_t>(by1 - by0), 0.f);
  const size_t segments = p.points.size() == 1 ? 1 : p.points.size() - 1;
  for (size_t i = 0; i < segments; ++i) {
    const Point a = p.points[i], b = p.points[std::min(i + 1, p.points.size() - 1)];
    const int x0 = std::max(bx0, static_cast<int>(std::floor(std::min(a.x, b.x) - half - 1)));
    const int x1 = std::min(bx1, static_cast<int>(std::ceil(std::max(a.x, b.x) + half + 1)));
    const int y0 = std::max(by0, static_cast<int>(std::floor(std::min(a.y, b.y) - half - 1)));
    const int y1 = std::min(by1, static_cast<int>(std::ceil(std::max(a.y, b.y) + half + 1)));
    const double dx = b.x - a.x, dy = b.y - a.y, len2 = dx * dx + dy * dy;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) {
        const double px = x + 0.5, py = y + 0.5;
        double t = len2 > 0 ? ((px - a.x) * dx + (py - a.y) * dy) / len2 : 0;
        t = std::clamp(t, 0.0, 1.0);
        const double ex = px - (a.x + t * dx), ey = py - (a.y + t * dy);
        const double c = std::clamp(half + 0.5 - std::sqrt(ex * ex + ey * ey), 0.0, 1.0);
        float& slot = cover[static_cast<size_t>(y - by0) * static_cast<size_t>(bw) + static_cast<size_t>(x - bx0)];
        slot = std::max(slot, static_cast<float>(c));
      }
  }
  for (int y = by0; y < by1; ++y)
    for (int x = bx0; x < bx1; ++x)
      r.blend(x, y, p.color, cover[static_cast<size_t>(y - by0) * static_cast<size_t>(bw) + static_cast<size_t>(x - bx0)]);
}

inline void draw(Raster& r, const Text& t, const Font& font) {
  if (t.text.empty()) return;
  const double w = font.width(t.text, t.size);
  const double shift = t.anchor == Anchor::Start ? 0 : t.anchor == Anchor::Middle ? w / 2 : w;
  // Along the text, its start is `shift` before (x, y): left of it, or below it when vertical.
  const double start = t.vertical ? t.y + shift : t.x - shift;
  const double whole = std::floor(start);
  const TextMask m = font.render(t.text, t.size, t.vertical ? 0 : start - whole);
  const int ox = t.vertical ? snap(t.x) : static_cast<int>(whole), oy = t.vertical ? snap(start) : snap(t.y);
  for (int my = 0; my < m.height; ++my)
    for (int mx = 0; mx < m.width; ++mx) {
      const std::uint8_t a = m.alpha[static_cast<size_t>(my) * static_cast<size_t>(m.width) + static_cast<size_t>(mx)];
      if (a == 0) continue;
      const int u = mx - m.origin_x, v = my - m.origin_y;  // along the text, below the baseline
      if (t.vertical)
        r.blend(ox + v, oy - u, t.color, a / 255.0);  // rotated 90 degrees counter-clockwise
      else
        r.blend(ox + u, oy + v, t.color, a / 255.0);
    }
}

inline void draw(Raster& r, const Cells& c) {
  if (c.rows < 1 || c.cols < 1 || c.colors.size() != static_cast<size_t>(c.rows) * static_cast<size_t>(c.cols))
    throw std::runtime_error("plot: a cell grid needs rows * cols colors");
  for (int i = 0; i < c.rows; ++i) {
    const int y0 = snap(c.y + c.h * i / c.rows), y1 = snap(c.y + c.h * (i + 1) / c.rows);
    for (int j = 0; j < c.cols; ++j) {
      const int x0 = snap(c.x + c.w * j / c.cols), x1 = snap(c.x + c.w * (j + 1) / c.cols);
      fill(r, x0, y0, x1, y1, c.colors[static_cast<size_t>(i) * static_cast<size_t>(c.cols) + static_cast<size_t>(j)]);
    }
  }
}

}  // namespace png_detail

inline Raster rasterize(const Figure& fig, const Font& font) {
  if (fig.width < 1 || fig.height < 1) throw std::runtime_error("plot: a figure needs a width and a height");
  Raster r;
  r.width = fig.width;
  r.height = fig.height;
  r.rgb.resize(static_cast<size_t>(r.width) * static_cast<size_t>(r.height) * 3);
  for (size_t i = 0; i < r.rgb.size(); i += 3) {
    r.rgb[i] = fig.background.r, r.rgb[i + 1] = fig.background.g, r.rgb[i + 2] = fig.background.b;
  }
  for (const Item& item : fig.items) {
    if (const auto* rect = std::get_if<FilledRect>(&item))
      png_detail::fill(r, png_detail::snap(rect->x), png_detail::snap(rect->y), png_detail::snap(rect->x + rect->w),
                       png_detail::snap(rect->y + rect->h), rect->fill);
    else if (const auto* line = std::get_if<Polyline>(&item))
      png_detail::draw(r, *line);
    else if (const auto* text = std::get_if<Text>(&item))
      png_detail::draw(r, *text, font);
    else
      png_detail::draw(r, std::get<Cells>(item));
  }
  return r;
}

inline Raster rasterize(const Figure& fig) { return rasterize(fig, default_font()); }

inline void write_png(const std::string& path, const Raster& r) {
  if (r.width < 1 || r.height < 1 || !stbi_write_png(path.c_str(), r.width, r.height, 3, r.rgb.data(), r.width * 3))
    throw std::runtime_error(path + ": cannot write the PNG file");
}

inline void write_png(const std::string& path, const Figure& fig) { write_png(path, rasterize(fig)); }

}  // namespace plot
