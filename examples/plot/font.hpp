#pragma once
// The font of the PNG backend: DejaVu Sans (Debian fonts-dejavu-core) rendered with stb_truetype (Debian
// libstb-dev), antialiased.
//   find_font_file()        the first readable file of: $SEQATTN_PLOT_FONT (when set), then the usual DejaVuSans.ttf
//                           paths of Debian/Ubuntu, Fedora, Arch and macOS/Homebrew; std::runtime_error naming every
//                           path tried when there is none ("install fonts-dejavu-core or set SEQATTN_PLOT_FONT")
//   Font font(path)         loads a TrueType file (std::runtime_error naming the file when it cannot)
//   font.width(text, size)  advance width in pixels of UTF-8 `text` at font size `size` (pixels per em)
//   font.render(text, size) the text's coverage mask (0..255), tight box, and where its baseline origin lies in it
//   default_font()          the font of find_font_file(), loaded once per program

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef STB_TRUETYPE_IMPLEMENTATION
#define STBTT_STATIC  // a private copy in every translation unit that includes this header
#define STB_TRUETYPE_IMPLEMENTATION
#if __has_include(<stb/stb_truetype.h>)
#include <stb/stb_truetype.h>
#else
#include <stb_truetype.h>
#endif
#endif

namespace plot {

inline std::vector<std::string> font_search_paths() {
  std::vector<std::string> paths;
  if (const char* env = std::getenv("SEQATTN_PLOT_FONT"); env != nullptr && *env != '\0') paths.emplace_back(env);
  for (const char* p : {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",  // Debian, Ubuntu (fonts-dejavu-core)
                        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",  // Fedora
                        "/usr/share/fonts/TTF/DejaVuSans.ttf",                // Arch
                        "/usr/share/fonts/dejavu/DejaVuSans.ttf",             // Alpine, older Fedora
                        "/opt/homebrew/share/fonts/DejaVuSans.ttf", "/usr/local/share/fonts/DejaVuSans.ttf"})
    paths.emplace_back(p);
  return paths;
}

inline std::string find_font_file() {
  const auto paths = font_search_paths();
  std::string tried;
  for (const auto& p : paths) {
    if (std::ifstream(p, std::ios::binary).good()) return p;
    tried += (tried.empty() ? "" : ", ") + p;
  }
  throw std::runtime_error("plot: no font for the PNG figures; tried " + tried +
                           " (install Debian's fonts-dejavu-core or set SEQATTN_PLOT_FONT to a .ttf file)");
}

// The next code point of UTF-8 `s` at `i` (advances i); malformed bytes read as U+FFFD.
inline int next_code_point(const std::string& s, size_t& i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i++);
  if (c < 0x80) return c;
  int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
  if (extra < 0) return 0xFFFD;
  int cp = c & (0x3F >> extra);
  for (; extra > 0; --extra) {
    if (i >= s.size() || (byte(i) & 0xC0) != 0x80) return 0xFFFD;
    cp = (cp << 6) | (byte(i++) & 0x3F);
  }
  return cp;
}

struct TextMask {
  int width = 0, height = 0;        // pixels
  int origin_x = 0, origin_y = 0;   // the baseline start of the text, in mask pixels
  std::vector<std::uint8_t> alpha;  // (height, width) coverage 0..255
};

class Font {
 public:
  explicit Font(const std::string& path) : path_(path) {
    std::ifstream in(path, std::ios::binary);
    data_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    const auto* bytes = reinterpret_cast<const unsigned char*>(data_.data());
    if (!in.good() && !in.eof()) throw std::runtime_error(path + ": cannot read the font file");
    if (data_.empty() || !stbtt_InitFont(&info_, bytes, stbtt_GetFontOffsetForIndex(bytes, 0)))
      throw std::runtime_error(path + ": not a TrueType font");
  }
  Font(const Font&) = delete;  // info_ points into data_
  Font& operator=(const Font&) = delete;

  const std::string& path() const { return path_; }

  double width(const std::string& text, double size) const {
    const float scale = stbtt_ScaleForMappingEmToPixels(&info_, static_cast<float>(size));
    double w = 0;
    int previous = 0;
    for (size_t i = 0; i < text.size();) {
      const int cp = next_code_point(text, i);
      int advance = 0, bearing = 0;
      stbtt_GetCodepointHMetrics(&info_, cp, &advance, &bearing);
      if (previous) w += scale * stbtt_GetCodepointKernAdvance(&info_, previous, cp);
      w += scale * advance;
      previous = cp;
    }
    return w;
  }

  // Glyphs placed at subpixel positions along the baseline, starting at x = `subpixel_x` (0..1).
  TextMask render(const std::string& text, double size, double subpixel_x = 0) const {
    const float scale = stbtt_ScaleForMappingEmToPixels(&info_, static_cast<float>(size));
    int ascent = 0, descent = 0, gap = 0;
    stbtt_GetFontVMetrics(&info_, &ascent, &descent, &gap);
    TextMask m;
    m.origin_x = 1;
    m.origin_y = static_cast<int>(std::ceil(ascent * scale)) + 1;
    m.width = static_cast<int>(std::ceil(width(text, size) + subpixel_x)) + 3;
    m.height = m.origin_y + static_cast<int>(std::ceil(-descent * scale)) + 2;
    m.alpha.assign(static_cast<size_t>(m.width) * static_cast<size_t>(m.height), 0);
    double pen = m.origin_x + subpixel_x;
    int previous = 0;
    std::vector<unsigned char> glyph;
    for (size_t i = 0; i < text.size();) {
      const int cp = next_code_point(text, i);
      if (previous) pen += scale * stbtt_GetCodepointKernAdvance(&info_, previous, cp);
      const int whole = static_cast<int>(std::floor(pen));
      const float shift = static_cast<float>(pen - whole);
      int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
      stbtt_GetCodepointBitmapBoxSubpixel(&info_, cp, scale, scale, shift, 0, &x0, &y0, &x1, &y1);
      const int gw = x1 - x0, gh = y1 - y0;
      if (gw > 0 && gh > 0) {
        glyph.assign(static_cast<size_t>(gw) * static_cast<size_t>(gh), 0);
        stbtt_MakeCodepointBitmapSubpixel(&info_, glyph.data(), gw, gh, gw, scale, scale, shift, 0, cp);
        for (int y = 0; y < gh; ++y)
          for (int x = 0; x < gw; ++x) {
            const int mx = whole + x0 + x, my = m.origin_y + y0 + y;
            if (mx < 0 || my < 0 || mx >= m.width || my >= m.height) continue;
            auto& a = m.alpha[static_cast<size_t>(my) * static_cast<size_t>(m.width) + static_cast<size_t>(mx)];
            a = static_cast<std::uint8_t>(std::min(255, a + glyph[static_cast<size_t>(y) * static_cast<size_t>(gw) + static_cast<size_t>(x)]));
          }
      }
      int advance = 0, bearing = 0;
      stbtt_GetCodepointHMetrics(&info_, cp, &advance, &bearing);
      pen += scale * advance;
      previous = cp;
    }
    return m;
  }

 private:
  std::string path_;
  std::string data_;
  stbtt_fontinfo info_{};
};

inline const Font& default_font() {
  static const Font font(find_font_file());
  return font;
}

}  // namespace plot
