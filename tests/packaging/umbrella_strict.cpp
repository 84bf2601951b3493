// Compiles the umbrella header with -Wall -Wextra -Wpedantic -Werror (tests/packaging/CMakeLists.txt), with the
// flags of a user's Release build and without OpenMP, so a warning in any header fails the tests build.
//
// Every public class template is instantiated in float and double under the same -Werror by the instance
// library (tests/instances/, tests/CMakeLists.txt), but with OpenMP. The one template whose code differs without
// OpenMP (`#ifdef _OPENMP` in its member functions) is instantiated here, once: a variable used only by an
// OpenMP pragma, say, warns only without OpenMP. A new `#ifdef _OPENMP` in a class template adds it here.
#include <seqattn/seqattn.hpp>

template class seqattn::MultiHeadAttention<float>;
