// The model-output conversion shared by the multistep exponential integrators (DPM-Solver /
// DPM-Solver++ and UniPC): VP coefficients α_t, σ_t, λ_t at a noise level σ, and diffusers'
// convert_model_output — the model's ε / x_0 / v prediction turned into the quantity the solver
// integrates: the data prediction x_0 (DPM-Solver++, UniPC predict_x0) or the noise prediction ε
// (DPM-Solver, UniPC with predict_x0 false). Dynamic thresholding is not implemented (the config
// rejects thresholding=true), so no thresholding step applies here.

import { add32, div32, log32, mul32, sqrt32, sq32, sub32 } from "../core/float32.ts";
import type { Tensor } from "../tensor/index.ts";
import type { PredictionType } from "./config.ts";

/** VP-form coefficients at noise level σ: α_t = 1/√(σ² + 1), σ_t = σ α_t, λ_t = log α_t − log σ_t. */
export function alphaSigma(sigma: number): { alpha: number; sigmaT: number; lambda: number } {
  const alpha = div32(1, sqrt32(add32(sq32(sigma), 1)));
  const sigmaT = mul32(sigma, alpha);
  return { alpha, sigmaT, lambda: sub32(log32(alpha), log32(sigmaT)) };
}

/**
 * diffusers' convert_model_output at noise level σ: with `dataPrediction` the x_0 estimate
 * ((x − σ_t ε)/α_t, the sample itself, or α_t x − σ_t v), otherwise the ε estimate (ε itself,
 * (x − α_t x_0)/σ_t, or α_t v + σ_t x). Always a new tensor.
 */
export function convertModelOutput(m: Tensor, x: Tensor, sigma: number, predictionType: PredictionType, dataPrediction: boolean): Tensor {
  const { alpha, sigmaT } = alphaSigma(sigma);
  if (dataPrediction) {
    if (predictionType === "epsilon") return x.sub(m.mul(sigmaT)).div(alpha);
    if (predictionType === "sample") return m.reshape(m.shape);
    return x.mul(alpha).sub(m.mul(sigmaT));
  }
  if (predictionType === "epsilon") return m.reshape(m.shape);
  if (predictionType === "sample") return x.sub(m.mul(alpha)).div(sigmaT);
  return m.mul(alpha).add(x.mul(sigmaT));
}
