// torch 1.13's CPU argsort without `stable` (aten/src/ATen/native/cpu/SortingKernel.cpp): libstdc++'s
// std::sort (introsort: median-of-three pivot, unguarded partition, heapsort past 2·⌊log2 n⌋ levels, final
// insertion sort with threshold 16) over (key, index) pairs compared by key only. Equal keys end up in the order
// this particular algorithm leaves them, which tomesd's dst/src partition depends on (it argsorts a buffer of
// -1s and 0s). Host-side, for the small integer partition buffers only: the matching itself runs as tensor ops.

const THRESHOLD = 16;

/** Indices that sort `keys` ascending exactly as torch.argsort(keys) (stable=False) does on the CPU. */
export function torchUnstableArgsort(keys: ArrayLike<number>, descending = false): Int32Array {
  const n = keys.length;
  const k = Float64Array.from(keys);
  const ix = new Int32Array(n);
  for (let i = 0; i < n; i++) ix[i] = i;
  // comp(a, b) on positions; comp(value, position) via the held pair for the insertion/heap steps
  const less = descending ? (x: number, y: number) => x > y : (x: number, y: number) => x < y;
  const comp = (a: number, b: number) => less(k[a]!, k[b]!);
  const swap = (a: number, b: number) => {
    const tk = k[a]!;
    k[a] = k[b]!;
    k[b] = tk;
    const ti = ix[a]!;
    ix[a] = ix[b]!;
    ix[b] = ti;
  };
  const move = (to: number, from: number) => {
    k[to] = k[from]!;
    ix[to] = ix[from]!;
  };
  const put = (to: number, key: number, idx: number) => {
    k[to] = key;
    ix[to] = idx;
  };

  const medianToFirst = (result: number, a: number, b: number, c: number) => {
    if (comp(a, b)) {
      if (comp(b, c)) swap(result, b);
      else if (comp(a, c)) swap(result, c);
      else swap(result, a);
    } else if (comp(a, c)) swap(result, a);
    else if (comp(b, c)) swap(result, c);
    else swap(result, b);
  };
  const unguardedPartition = (first: number, last: number, pivot: number) => {
    for (;;) {
      while (comp(first, pivot)) ++first;
      --last;
      while (comp(pivot, last)) --last;
      if (!(first < last)) return first;
      swap(first, last);
      ++first;
    }
  };
  const pushHeap = (first: number, hole: number, top: number, vk: number, vi: number) => {
    let parent = Math.trunc((hole - 1) / 2);
    while (hole > top && less(k[first + parent]!, vk)) {
      move(first + hole, first + parent);
      hole = parent;
      parent = Math.trunc((hole - 1) / 2);
    }
    put(first + hole, vk, vi);
  };
  const adjustHeap = (first: number, hole: number, len: number, vk: number, vi: number) => {
    const top = hole;
    let second = hole;
    while (second < Math.trunc((len - 1) / 2)) {
      second = 2 * (second + 1);
      if (comp(first + second, first + second - 1)) second--;
      move(first + hole, first + second);
      hole = second;
    }
    if ((len & 1) === 0 && second === Math.trunc((len - 2) / 2)) {
      second = 2 * (second + 1);
      move(first + hole, first + second - 1);
      hole = second - 1;
    }
    pushHeap(first, hole, top, vk, vi);
  };
  const heapSort = (first: number, last: number) => {
    const len = last - first;
    if (len >= 2)
      for (let parent = Math.trunc((len - 2) / 2); ; parent--) {
        adjustHeap(first, parent, len, k[first + parent]!, ix[first + parent]!);
        if (parent === 0) break;
      }
    while (last - first > 1) {
      --last;
      const vk = k[last]!;
      const vi = ix[last]!;
      move(last, first);
      adjustHeap(first, 0, last - first, vk, vi);
    }
  };
  const introsortLoop = (first: number, last: number, depth: number) => {
    while (last - first > THRESHOLD) {
      if (depth === 0) {
        heapSort(first, last);
        return;
      }
      --depth;
      const mid = first + Math.trunc((last - first) / 2);
      medianToFirst(first, first + 1, mid, last - 1);
      const cut = unguardedPartition(first + 1, last, first);
      introsortLoop(cut, last, depth);
      last = cut;
    }
  };
  const linearInsert = (last: number) => {
    const vk = k[last]!;
    const vi = ix[last]!;
    let next = last - 1;
    while (less(vk, k[next]!)) {
      move(last, next);
      last = next;
      --next;
    }
    put(last, vk, vi);
  };
  const insertionSort = (first: number, last: number) => {
    if (first === last) return;
    for (let i = first + 1; i !== last; ++i) {
      if (comp(i, first)) {
        const vk = k[i]!;
        const vi = ix[i]!;
        for (let j = i; j > first; j--) move(j, j - 1);
        put(first, vk, vi);
      } else linearInsert(i);
    }
  };

  if (n > 1) {
    introsortLoop(0, n, 2 * Math.floor(Math.log2(n)));
    if (n > THRESHOLD) {
      insertionSort(0, THRESHOLD);
      for (let i = THRESHOLD; i < n; i++) linearInsert(i);
    } else insertionSort(0, n);
  }
  return ix;
}
