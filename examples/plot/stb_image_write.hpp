#pragma once
// stb_image_write.h (Debian libstb-dev) with its implementation, private (static) to each translation unit that
// includes it: the one include of png.hpp, svg.hpp and time_series_classifier/heatmap.hpp, so a unit that
// includes several of them compiles the implementation once.

#ifndef INCLUDE_STB_IMAGE_WRITE_H  // not yet included in this translation unit
#ifndef STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#endif
#if __has_include(<stb/stb_image_write.h>)
#include <stb/stb_image_write.h>
#else
#include <stb_image_write.h>
#endif
#endif
