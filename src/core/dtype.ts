// Data types: the seven element types a Tensor can hold, their byte sizes, and the
// typed-array views a CPU storage uses for each (float16/bfloat16 are raw 16-bit words).

export type DType = "float32" | "float16" | "bfloat16" | "int32" | "int64" | "uint8" | "bool";

export const DTYPES: readonly DType[] = ["float32", "float16", "bfloat16", "int32", "int64", "uint8", "bool"];

const BYTES: Record<DType, number> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int32: 4,
  int64: 8,
  uint8: 1,
  bool: 1,
};

/** Bytes per element. */
export function dtypeBytes(dtype: DType): number {
  return BYTES[dtype];
}

export function isFloat(dtype: DType): boolean {
  return dtype === "float32" || dtype === "float16" || dtype === "bfloat16";
}

export function isHalf(dtype: DType): boolean {
  return dtype === "float16" || dtype === "bfloat16";
}

export function isInteger(dtype: DType): boolean {
  return dtype === "int32" || dtype === "int64" || dtype === "uint8" || dtype === "bool";
}

export function assertDType(value: unknown): DType {
  if (typeof value === "string" && (DTYPES as readonly string[]).includes(value)) return value as DType;
  throw new TypeError(`unknown dtype ${JSON.stringify(value)}; expected one of ${DTYPES.join(", ")}`);
}

/** The typed array that views raw storage bytes of each dtype (16-bit floats are their bit patterns). */
export type RawArray = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

export function rawView(dtype: DType, buffer: ArrayBufferLike, byteOffset: number, length: number): RawArray {
  switch (dtype) {
    case "float32":
      return new Float32Array(buffer, byteOffset, length);
    case "float16":
    case "bfloat16":
      return new Uint16Array(buffer, byteOffset, length);
    case "int32":
      return new Int32Array(buffer, byteOffset, length);
    case "int64":
      return new BigInt64Array(buffer, byteOffset, length);
    case "uint8":
    case "bool":
      return new Uint8Array(buffer, byteOffset, length);
  }
}
