#pragma once
// Umbrella header: includes every public header of seqattn.

#include "seqattn/core/config.hpp"
#include "seqattn/core/errors.hpp"
#include "seqattn/core/init.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/param.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/layers/activation.hpp"
#include "seqattn/layers/dense.hpp"
