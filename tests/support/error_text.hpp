#pragma once
// The text of an expected exception, for tests of error messages.
//   error_of<E>(f)                 runs f; returns the what() of the E it throws, "wrong exception type: <what>"
//                                  for another std::exception, "(no exception)" when f returns
//   EXPECT_CONTAINS(text, part)    text contains part (prints text when not)

#include <gtest/gtest.h>

#include <exception>
#include <string>

#include "seqattn/core/errors.hpp"

namespace seqattn::testing {

template <class E = Error, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "(no exception)";
}

}  // namespace seqattn::testing

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)
