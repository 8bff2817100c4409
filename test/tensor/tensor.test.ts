// Tensor core: creation, views without copies, read-back, dtype conversion, refcounted
// storage, tidy scopes and allocator statistics.

import { describe, expect, test } from "bun:test";
import {
  Tensor,
  arange,
  full,
  keep,
  linspace,
  memoryStats,
  ones,
  resetPeakMemory,
  tensor,
  tidy,
  zeros,
  randn,
  rand,
} from "../../src/index.ts";

describe("creation", () => {
  test("zeros/ones/full/arange/linspace", () => {
    tidy(() => {
      expect(zeros([2, 3]).toArray()).toEqual([
        [0, 0, 0],
        [0, 0, 0],
      ]);
      expect(ones([2], { dtype: "float16" }).toArray()).toEqual([1, 1]);
      expect(full([2], 2.5, { dtype: "bfloat16" }).toArray()).toEqual([2.5, 2.5]);
      const a = arange(5);
      expect(a.dtype).toBe("int64");
      expect(a.toArray()).toEqual([0, 1, 2, 3, 4]);
      expect(arange(1, 2, 0.25).toArray()).toEqual([1, 1.25, 1.5, 1.75]);
      expect(arange(5, 0, -2).toArray()).toEqual([5, 3, 1]);
      expect(Array.from(linspace(0, 1, 5).toFloat32Array())).toEqual([0, 0.25, 0.5, 0.75, 1]);
      expect(linspace(0, 1, 0).numel).toBe(0);
      expect(linspace(3, 3, 1).toArray()).toEqual([3]);
    });
  });

  test("tensor() infers shape and dtype; rejects ragged input", () => {
    tidy(() => {
      const t = tensor([
        [1, 2, 3],
        [4, 5, 6],
      ]);
      expect(t.shape).toEqual([2, 3]);
      expect(t.dtype).toBe("float32");
      expect(tensor([1n, 2n]).dtype).toBe("int64");
      expect(tensor([true, false]).dtype).toBe("bool");
      expect(tensor(7).shape).toEqual([]);
      expect(tensor(7).item()).toBe(7);
      expect(() => tensor([[1, 2], [3]])).toThrow(/ragged/);
      expect(() => tensor(new Float32Array(5), { shape: [2, 2] })).toThrow(/does not hold/);
      // int64 beyond 2^53 survives through bigint input
      const big = tensor([2n ** 62n], { dtype: "int64" });
      expect((big.toTypedArray() as BigInt64Array)[0]).toBe(2n ** 62n);
    });
  });

  test("randn/rand are seeded and reproducible", () => {
    tidy(() => {
      const a = randn([2, 4, 8, 8], { seed: 7 });
      const b = randn([2, 4, 8, 8], { seed: 7 });
      expect(a.equals(b)).toBe(true);
      expect(randn([2, 4, 8, 8], { seed: 8 }).equals(a)).toBe(false);
      const u = rand([1000], { seed: 1 }).toFloat32Array();
      expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...u)).toBeLessThan(1);
      expect(randn([3], { seed: 1, dtype: "float16" }).dtype).toBe("float16");
      expect(() => randn([3], { dtype: "int32" })).toThrow(/floating point/);
    });
  });
});

describe("views share storage and never copy", () => {
  test("reshape/permute/transpose/narrow/slice/select/expand/unsqueeze/squeeze", () => {
    tidy(() => {
      const base = arange(24, undefined, 1, { dtype: "float32" }).reshape(2, 3, 4);
      const p = base.permute(2, 0, 1);
      expect(p.shape).toEqual([4, 2, 3]);
      expect(p.storage).toBe(base.storage);
      expect(p.isContiguous).toBe(false);
      expect(p.toArray()).toEqual([0, 1, 2, 3].map((k) => [0, 1].map((i) => [0, 1, 2].map((j) => i * 12 + j * 4 + k))));
      const t = base.transpose(0, 2);
      expect(t.shape).toEqual([4, 3, 2]);
      const n = base.narrow(2, 1, 2);
      expect(n.shape).toEqual([2, 3, 2]);
      expect(n.toArray()).toEqual([0, 1].map((i) => [0, 1, 2].map((j) => [1, 2].map((k) => i * 12 + j * 4 + k))));
      const s = base.slice(2, -3, undefined, 2);
      expect(s.toArray()).toEqual([0, 1].map((i) => [0, 1, 2].map((j) => [1, 3].map((k) => i * 12 + j * 4 + k))));
      expect(base.select(1, -1).toArray()).toEqual([
        [8, 9, 10, 11],
        [20, 21, 22, 23],
      ]);
      const e = tensor([[1], [2]]).expand(2, 3);
      expect(e.strides).toEqual([1, 0]);
      expect(e.toArray()).toEqual([
        [1, 1, 1],
        [2, 2, 2],
      ]);
      expect(tensor([1, 2]).expand(3, -1).shape).toEqual([3, 2]);
      expect(() => tensor([1, 2]).expand(3)).toThrow(/cannot expand/);
      const u = base.unsqueeze(1);
      expect(u.shape).toEqual([2, 1, 3, 4]);
      expect(u.unsqueeze(-1).shape).toEqual([2, 1, 3, 4, 1]);
      expect(u.squeeze().shape).toEqual([2, 3, 4]);
      expect(u.squeeze(0).shape).toEqual([2, 1, 3, 4]);
      expect(base.flatten(1).shape).toEqual([2, 12]);
      expect(base.T.shape).toEqual([2, 4, 3]);
    });
  });

  test("reshape views when possible, copies when not", () => {
    tidy(() => {
      const a = arange(12, undefined, 1, { dtype: "float32" }).reshape(3, 4);
      const v = a.reshape(2, 6);
      expect(v.storage).toBe(a.storage);
      expect(a.reshape(-1, 2).shape).toEqual([6, 2]);
      const t = a.T; // [4, 3] non-contiguous
      expect(t.narrow(1, 0, 3).reshape(2, 2, 3).storage).toBe(a.storage); // splitting a dim keeps a view
      const flat = t.reshape(12); // needs a copy
      expect(flat.storage).not.toBe(a.storage);
      expect(flat.toArray()).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
      expect(() => t.viewAs(12)).toThrow(/without a copy/);
      expect(() => a.reshape(5, 2)).toThrow(/elements/);
      expect(() => a.reshape(-1, -1)).toThrow(/only one/);
    });
  });

  test("contiguous copies strided views and reuses contiguous ones", () => {
    tidy(() => {
      const a = arange(6, undefined, 1, { dtype: "float16" }).reshape(2, 3);
      const c = a.T.contiguous();
      expect(c.isContiguous).toBe(true);
      expect(c.toArray()).toEqual([
        [0, 3],
        [1, 4],
        [2, 5],
      ]);
      expect(a.contiguous().storage).toBe(a.storage);
      // writes through a clone do not touch the source
      expect(a.clone().storage).not.toBe(a.storage);
    });
  });

  test("errors name the problem", () => {
    tidy(() => {
      const a = zeros([2, 3]);
      expect(() => a.narrow(1, 2, 2)).toThrow(/out of range/);
      expect(() => a.permute(0, 0)).toThrow(/permutation/);
      expect(() => a.select(0, 5)).toThrow(/out of range/);
      expect(() => a.transpose(0, 2)).toThrow(/out of range/);
      expect(() => zeros([2, -1])).toThrow(/non-negative/);
    });
  });
});

describe("dtype conversion and read-back", () => {
  test("to(dtype) rounds to nearest even and truncates toward zero for ints", () => {
    tidy(() => {
      const x = tensor([1.5, -2.7, 65519, 65520, 1e-8, 3.999]);
      // 65519 rounds down to the largest float16 (65504), 65520 is the overflow threshold, 1e-8 underflows (< half the smallest subnormal)
      expect(x.to("float16").toArray()).toEqual([1.5, -2.69921875, 65504, Infinity, 0, 3.998046875]);
      expect(x.to("int32").toArray()).toEqual([1, -2, 65519, 65520, 0, 3]);
      expect(x.to("int64").to("float32").toArray()).toEqual([1, -2, 65519, 65520, 0, 3]);
      expect(tensor([0, 2, -1]).to("bool").toArray()).toEqual([0, 1, 1]);
      expect(tensor([1 + 2 ** -8]).to("bfloat16").toArray()).toEqual([1]); // tie → even
      expect(tensor([1 + 3 * 2 ** -8]).to("bfloat16").toArray()).toEqual([1 + 2 ** -6]); // tie → even (up)
      expect(x.to("float32").storage).toBe(x.storage);
      expect(x.to({ dtype: "float16" }).dtype).toBe("float16");
    });
  });

  test("toRawArray exposes 16-bit patterns; toTypedArray widens", () => {
    tidy(() => {
      const h = tensor([1, -2], { dtype: "float16" });
      expect(Array.from(h.toRawArray() as Uint16Array)).toEqual([0x3c00, 0xc000]);
      const b = tensor([1, -2], { dtype: "bfloat16" });
      expect(Array.from(b.toRawArray() as Uint16Array)).toEqual([0x3f80, 0xc000]);
      expect(b.toTypedArray()).toBeInstanceOf(Float32Array);
      expect(() => zeros([2]).item()).toThrow(/exactly one/);
    });
  });

  test("to('meta') keeps shapes without values", () => {
    tidy(() => {
      const m = zeros([4, 5]).to("meta");
      expect(m.device).toBe("meta");
      expect(m.shape).toEqual([4, 5]);
      expect(() => m.toArray()).toThrow(/meta/);
      expect(Tensor.empty([1000, 1000], "float16", "meta").byteLength).toBe(2_000_000);
    });
  });
});

describe("memory is explicit", () => {
  test("live bytes return to the start after a tidy scope that made hundreds of tensors", () => {
    const start = memoryStats("cpu").live;
    const result = tidy(() => {
      let acc = zeros([64, 64]);
      for (let i = 0; i < 300; i++) acc = acc.add(ones([64, 64])).reshape(4096).reshape(64, 64).T.contiguous();
      return acc;
    });
    expect(memoryStats("cpu").live).toBe(start + 64 * 64 * 4);
    expect(tidy(() => result.sum().item())).toBe(300 * 4096);
    result.dispose();
    expect(memoryStats("cpu").live).toBe(start);
  });

  test("views hold the storage until the last reference is disposed", () => {
    const start = memoryStats("cpu").live;
    const a = zeros([100]);
    const v = a.narrow(0, 10, 10);
    a.dispose();
    expect(a.isDisposed).toBe(true);
    expect(memoryStats("cpu").live).toBe(start + 400);
    expect(v.toArray()).toEqual(new Array(10).fill(0));
    v.dispose();
    v.dispose(); // idempotent
    expect(memoryStats("cpu").live).toBe(start);
    expect(() => a.add(1)).toThrow(/disposed/);
  });

  test("nested tidy, keep, returned structures and `using`", () => {
    const start = memoryStats("cpu").live;
    let kept: Tensor | null = null;
    const out = tidy(() => {
      const inner = tidy(() => {
        kept = keep(ones([10]));
        zeros([10]);
        return { a: ones([3]), list: [zeros([2])] };
      });
      zeros([50]);
      return inner;
    });
    expect(memoryStats("cpu").live).toBe(start + 40 + 12 + 8);
    out.a.dispose();
    out.list[0]!.dispose();
    kept!.dispose();
    {
      using t = zeros([1000]);
      expect(memoryStats("cpu").live).toBe(start + 4000);
      expect(t.numel).toBe(1000);
    }
    expect(memoryStats("cpu").live).toBe(start);
  });

  test("an exception inside tidy disposes everything; async fns are rejected", () => {
    const start = memoryStats("cpu").live;
    expect(() =>
      tidy(() => {
        zeros([100]);
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(memoryStats("cpu").live).toBe(start);
    expect(() => tidy((async () => zeros([1])) as unknown as () => Tensor)).toThrow(/synchronous/);
    expect(memoryStats("cpu").live).toBe(start);
  });

  test("peak tracks the high-water mark and can be reset", () => {
    resetPeakMemory("cpu");
    const start = memoryStats("cpu");
    expect(start.peak).toBe(start.live);
    tidy(() => {
      zeros([1 << 20]);
    });
    const after = memoryStats("cpu");
    expect(after.peak).toBeGreaterThanOrEqual(start.live + 4 * (1 << 20));
    expect(after.live).toBe(start.live);
    resetPeakMemory("cpu");
    expect(memoryStats("cpu").peak).toBe(start.live);
  });
});
