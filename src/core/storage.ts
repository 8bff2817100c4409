// Refcounted device storage. A Storage is a block of bytes on one device, shared by every
// Tensor view of it; the last release hands it back to its backend's allocator.

import type { Device } from "./device.ts";
import { TensorError } from "./errors.ts";

export class Storage {
  private refs = 1;

  /**
   * @param handle backend-specific: a Uint8Array on the CPU, a device pointer on CUDA, null on meta.
   * @param onFree called once when the last reference is released (returns the bytes to the allocator).
   */
  constructor(
    readonly device: Device,
    readonly byteLength: number,
    public handle: unknown,
    private readonly onFree: ((s: Storage) => void) | null,
  ) {}

  get refCount(): number {
    return this.refs;
  }

  get released(): boolean {
    return this.refs <= 0;
  }

  retain(): this {
    if (this.refs <= 0) throw new TensorError("cannot use a storage that was already released (a disposed tensor?)");
    this.refs++;
    return this;
  }

  release(): void {
    if (this.refs <= 0) return;
    if (--this.refs === 0) {
      this.onFree?.(this);
      this.handle = null;
    }
  }
}
