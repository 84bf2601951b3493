#pragma once
// The vector backend: a Figure (figure.hpp) as SVG 1.1 text. No font file needed: text is <text> in
// "DejaVu Sans" (falling back to Verdana, then any sans-serif), at the figure's sizes in pixels.
//   to_svg(fig)                  the document: <svg ...> ... </svg>, one element per item, in drawing order
//   to_svg(fig, max_rect_cells)  when the figure's cell grids hold up to max_rect_cells cells in all (default 4096:
//                                a 64 x 64 map), one <rect> per cell (about 45 bytes each); beyond, every grid of
//                                more than 256 cells becomes one embedded PNG (<image>, pixelated), so the file
//                                stays small (a 4-head figure of 50 x 50 maps: 60 KB instead of 500 KB)
//   write_svg(path, fig)         std::runtime_error naming the path when it cannot be written
// Coordinates are written with at most 2 decimals.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "colormap.hpp"
#include "figure.hpp"

#include "stb_image_write.hpp"

namespace plot {

namespace svg_detail {

inline constexpr long kSmallGrid = 256;  // cells: a grid this small (a color bar) stays <rect>s

inline std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", std::abs(v) < 0.005 ? 0.0 : v);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

inline std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

inline std::string base64(const std::vector<unsigned char>& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const unsigned v = (bytes[i] << 16) | ((i + 1 < bytes.size() ? bytes[i + 1] : 0) << 8) |
                       (i + 2 < bytes.size() ? bytes[i + 2] : 0);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? table[v & 63] : '=';
  }
  return out;
}

inline void cells_as_image(std::ostream& out, const Cells& c) {
  std::vector<unsigned char> rgb;
  for (const Color& k : c.colors) rgb.insert(rgb.end(), {k.r, k.g, k.b});
  std::vector<unsigned char> file;
  stbi_write_png_to_func(
      [](void* context, void* data, int size) {
        auto* f = static_cast<std::vector<unsigned char>*>(context);
        f->insert(f->end(), static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + size);
      },
      &file, c.cols, c.rows, 3, rgb.data(), c.cols * 3);
  out << "<image x=\"" << num(c.x) << "\" y=\"" << num(c.y) << "\" width=\"" << num(c.w) << "\" height=\"" << num(c.h)
      << "\" preserveAspectRatio=\"none\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,"
      << base64(file) << "\"/>\n";
}

// One <rect> per cell in a group scaled to the cell size (cell (i, j) at x = j, y = i: about 45 bytes a cell).
inline void cells_as_rects(std::ostream& out, const Cells& c) {
  out << "<g transform=\"translate(" << num(c.x) << " " << num(c.y) << ") scale(" << num(c.w / c.cols) << " "
      << num(c.h / c.rows) << ")\" shape-rendering=\"crispEdges\">\n";
  for (int i = 0; i < c.rows; ++i)
    for (int j = 0; j < c.cols; ++j)
      out << "<rect x=\"" << j << "\" y=\"" << i << "\" width=\"1\" height=\"1\" fill=\""
          << hex(c.colors[static_cast<size_t>(i) * static_cast<size_t>(c.cols) + static_cast<size_t>(j)]) << "\"/>\n";
  out << "</g>\n";
}

}  // namespace svg_detail

inline std::string to_svg(const Figure& fig, long max_rect_cells = 4096) {
  using namespace svg_detail;
  long total_cells = 0;
  for (const Item& item : fig.items)
    if (const auto* c = std::get_if<Cells>(&item)) total_cells += static_cast<long>(c->rows) * c->cols;
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" << fig.width << "\" height=\""
      << fig.height << "\" viewBox=\"0 0 " << fig.width << " " << fig.height
      << "\" font-family=\"DejaVu Sans, Verdana, sans-serif\">\n";
  out << "<rect width=\"100%\" height=\"100%\" fill=\"" << hex(fig.background) << "\"/>\n";
  for (const Item& item : fig.items) {
    if (const auto* r = std::get_if<FilledRect>(&item)) {
      out << "<rect x=\"" << num(r->x) << "\" y=\"" << num(r->y) << "\" width=\"" << num(r->w) << "\" height=\""
          << num(r->h) << "\" fill=\"" << hex(r->fill) << "\"/>\n";
    } else if (const auto* p = std::get_if<Polyline>(&item)) {
      out << "<polyline fill=\"none\" stroke=\"" << hex(p->color) << "\" stroke-width=\"" << num(p->width)
          << "\" stroke-linejoin=\"round\" points=\"";
      for (size_t i = 0; i < p->points.size(); ++i)
        out << (i ? " " : "") << num(p->points[i].x) << "," << num(p->points[i].y);
      out << "\"/>\n";
    } else if (const auto* t = std::get_if<Text>(&item)) {
      const char* anchor = t->anchor == Anchor::Start ? "start" : t->anchor == Anchor::Middle ? "middle" : "end";
      out << "<text x=\"" << num(t->x) << "\" y=\"" << num(t->y) << "\" font-size=\"" << num(t->size) << "\" fill=\""
          << hex(t->color) << "\"";
      if (t->anchor != Anchor::Start) out << " text-anchor=\"" << anchor << "\"";
      if (t->vertical) out << " transform=\"rotate(-90 " << num(t->x) << " " << num(t->y) << ")\"";
      out << ">" << escape(t->text) << "</text>\n";
    } else {
      const auto& c = std::get<Cells>(item);
      if (c.rows < 1 || c.cols < 1 || c.colors.size() != static_cast<size_t>(c.rows) * static_cast<size_t>(c.cols))
        throw std::runtime_error("plot: a cell grid needs rows * cols colors");
      if (total_cells <= max_rect_cells || static_cast<long>(c.rows) * c.cols <= kSmallGrid)
        cells_as_rects(out, c);
      else
        cells_as_image(out, c);
    }
  }
  out << "</svg>\n";
  return out.str();
}

inline void write_svg(const std::string& path, const Figure& fig, long max_rect_cells = 4096) {
  std::ofstream out(path, std::ios::binary);
  out << to_svg(fig, max_rect_cells);
  out.flush();
  if (!out) throw std::runtime_error(path + ": cannot write the SVG file");
}

}  // namespace plot
