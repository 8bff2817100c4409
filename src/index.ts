// bun-diffusion: Stable Diffusion text-to-image for Bun. The package entry point re-exports
// the public API of each layer.

export * from "./tensor/index.ts";
export { getBackend, hasBackend } from "./backends/registry.ts";
