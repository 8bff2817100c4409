// UNet2DConditionModel as diffusers' unets/unet_2d_condition.py builds and runs it for SD 1.x, SD 2.x
// and SDXL: time_proj + time_embedding (+ SDXL's add_time_proj / add_embedding for "text_time"),
// conv_in, down_blocks, mid_block, up_blocks (skip connections consumed in reverse; explicit upsample
// sizes when the latent is not a multiple of 2^upsamplers), conv_norm_out → act → conv_out.
// fromPretrained() loads a diffusers `unet/` folder memory-consciously (meta build, then one parameter
// at a time). Attention runs each module's processor: by default the backend's fused kernel ("fused"),
// another kind with `attention`, or any processor via setAttnProcessor() (listed by attnProcessors()).

import { type DType, type Device, Tensor, add, cat, mul, sub, tidy } from "../../tensor/index.ts";
import { DIFFUSERS_WEIGHTS, type PretrainedOptions, loadPretrained } from "../../io/model-folder.ts";
import type { AttnProcessor } from "../../nn/attention.ts";
import type { AttentionKind } from "../../nn/attention-dispatch.ts";
import { type AttnProcessorChoice, attnProcessors, setAttentionKind, setAttnProcessor } from "../../nn/attention-processors.ts";
import { Conv2d, GroupNorm, activation } from "../../nn/layers.ts";
import { Module, ModuleList, type ModuleOptions } from "../../nn/module.ts";
import {
  type BlockOptions,
  CrossAttnDownBlock2D,
  CrossAttnUpBlock2D,
  type DownBlock,
  DownBlock2D,
  type UpBlock,
  UNetMidBlock2DCrossAttn,
  UpBlock2D,
} from "./blocks.ts";
import { type UNet2DConditionConfig, blockTypeName, parseUNetConfig, unetLevels } from "./config.ts";
import { TimestepEmbedding, Timesteps } from "./embeddings.ts";
import { swap } from "./resnet.ts";
import type { CrossAttentionInputs } from "./transformer.ts";

export interface UNetForwardOptions {
  /** SDXL ("text_time"): pooled text embeddings [B, P]. */
  textEmbeds?: Tensor | null;
  /**
   * SDXL ("text_time"): [B, 6] = (orig_h, orig_w, crop_top, crop_left, target_h, target_w) in pixels. Read on the
   * host each call: pass a CPU tensor (as the SDXL pipeline does); one on a GPU costs a synchronisation per step.
   */
  timeIds?: Tensor | null;
  /** LCM-distilled UNets (time_cond_proj_dim): guidance embedding [B, time_cond_proj_dim]. */
  timestepCond?: Tensor | null;
  /** [B, S] keep-mask over the text tokens (1 keep, 0 drop), as diffusers' encoder_attention_mask. */
  encoderAttentionMask?: Tensor | null;
}

export interface UNetOptions extends ModuleOptions {
  /** Attention implementation of every Attention module's default processor (default "fused"). */
  attention?: AttentionKind | null;
}

export interface UNetFromPretrainedOptions extends Omit<PretrainedOptions, "weightsNames"> {
  device?: Device;
  dtype?: DType;
  variant?: string;
  attention?: AttentionKind | null;
}

export class UNet2DConditionModel extends Module<[Tensor, number | Tensor, Tensor, UNetForwardOptions?], Tensor> {
  readonly config: UNet2DConditionConfig;
  readonly conv_in: Conv2d;
  readonly time_proj: Timesteps;
  readonly time_embedding: TimestepEmbedding;
  readonly add_time_proj: Timesteps | null = null;
  readonly add_embedding: TimestepEmbedding | null = null;
  readonly down_blocks: ModuleList<DownBlock>;
  readonly up_blocks: ModuleList<UpBlock>;
  readonly mid_block: UNetMidBlock2DCrossAttn | null;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  /** Upsampling layers: latents whose sides are not multiples of 2^numUpsamplers get explicit sizes. */
  readonly numUpsamplers: number;
  readonly #convAct: ((x: Tensor) => Tensor) | null; // null = SiLU, fused into conv_norm_out
  readonly #timeEmbedAct: ((x: Tensor) => Tensor) | null;

  constructor(config: UNet2DConditionConfig | Record<string, unknown>, opts: UNetOptions = {}) {
    super(opts);
    const cfg = (this.config = parseUNetConfig(config));
    const o = this.options;
    const lv = unetLevels(cfg);
    const ch = cfg.block_out_channels;
    const n = ch.length;
    const temb = lv.timeEmbedDim;

    const k = cfg.conv_in_kernel;
    this.conv_in = this.child("conv_in", new Conv2d(cfg.in_channels, ch[0]!, k, { ...o, padding: (k - 1) >> 1 }));
    this.time_proj = this.child("time_proj", new Timesteps(ch[0]!, cfg.flip_sin_to_cos, cfg.freq_shift, o));
    this.time_embedding = this.child(
      "time_embedding",
      new TimestepEmbedding(ch[0]!, temb, { ...o, actFn: cfg.act_fn, postActFn: cfg.timestep_post_act, condProjDim: cfg.time_cond_proj_dim }),
    );
    if (cfg.addition_embed_type === "text_time") {
      this.add_time_proj = this.child("add_time_proj", new Timesteps(cfg.addition_time_embed_dim!, cfg.flip_sin_to_cos, cfg.freq_shift, o));
      this.add_embedding = this.child("add_embedding", new TimestepEmbedding(cfg.projection_class_embeddings_input_dim!, temb, o));
    }
    this.#timeEmbedAct = cfg.time_embedding_act_fn ? activation(cfg.time_embedding_act_fn) : null;
    this.#convAct = cfg.act_fn === "silu" || cfg.act_fn === "swish" ? null : activation(cfg.act_fn);

    const level = (heads: number, cross: number, only: boolean, depth: number | number[], layers: number): BlockOptions => ({
      ...o,
      numLayers: layers,
      tembChannels: temb,
      resnetEps: cfg.norm_eps,
      resnetGroups: cfg.norm_num_groups,
      resnetActFn: cfg.act_fn,
      attention: {
        heads,
        crossAttentionDim: cross,
        transformerLayers: depth,
        useLinearProjection: cfg.use_linear_projection,
        onlyCrossAttention: only,
        upcastAttention: cfg.upcast_attention,
      },
    });

    // down: level i maps ch[i-1] -> ch[i]; all but the last downsample
    const down: DownBlock[] = [];
    for (let i = 0; i < n; i++) {
      const bo = level(lv.heads[i]!, lv.crossAttentionDim[i]!, lv.onlyCrossAttention[i]!, lv.transformerLayers[i]!, lv.layersPerBlock[i]!);
      const Block = blockTypeName(cfg.down_block_types[i]!) === "CrossAttnDownBlock2D" ? CrossAttnDownBlock2D : DownBlock2D;
      down.push(new Block(ch[Math.max(0, i - 1)]!, ch[i]!, i < n - 1, cfg.downsample_padding, bo));
    }
    // mid: diffusers passes no only_cross_attention to UNetMidBlock2DCrossAttn (one attention layer)
    const mid =
      cfg.mid_block_type === null
        ? null
        : new UNetMidBlock2DCrossAttn(
            ch[n - 1]!,
            cfg.mid_block_scale_factor,
            level(lv.heads[n - 1]!, lv.crossAttentionDim[n - 1]!, false, lv.transformerLayers[n - 1]!, 1),
          );
    // up: reversed levels, one resnet more than the mirrored down block; all but the last upsample
    const up: UpBlock[] = [];
    const rev = (a: readonly unknown[], i: number) => a[a.length - 1 - i];
    let outC = ch[n - 1]!;
    for (let i = 0; i < n; i++) {
      const prev = outC;
      outC = rev(ch, i) as number;
      const inC = rev(ch, Math.min(i + 1, n - 1)) as number;
      const bo = level(
        rev(lv.heads, i) as number,
        rev(lv.crossAttentionDim, i) as number,
        rev(lv.onlyCrossAttention, i) as boolean,
        lv.upTransformerLayers[i]!,
        (rev(lv.layersPerBlock, i) as number) + 1,
      );
      const Block = blockTypeName(cfg.up_block_types[i]!) === "CrossAttnUpBlock2D" ? CrossAttnUpBlock2D : UpBlock2D;
      up.push(new Block(inC, outC, prev, i < n - 1, bo));
    }
    this.numUpsamplers = n - 1;
    // registration order = diffusers' state-dict order: down_blocks, up_blocks, mid_block
    this.down_blocks = this.child("down_blocks", new ModuleList(down, o));
    this.up_blocks = this.child("up_blocks", new ModuleList(up, o));
    this.mid_block = mid ? this.child("mid_block", mid) : null;
    this.conv_norm_out = this.child("conv_norm_out", new GroupNorm(cfg.norm_num_groups, ch[0]!, { ...o, eps: cfg.norm_eps }));
    const ko = cfg.conv_out_kernel;
    this.conv_out = this.child("conv_out", new Conv2d(ch[0]!, cfg.out_channels, ko, { ...o, padding: (ko - 1) >> 1 }));

    if (opts.attention) setAttentionKind(this, opts.attention);
  }

  /** Install an attention processor on every Attention module, or one per module chosen by (path, module). */
  setAttnProcessor(choice: AttnProcessorChoice): void {
    setAttnProcessor(this, choice);
  }

  /** Module path -> processor of every Attention module. */
  attnProcessors(): Map<string, AttnProcessor> {
    return attnProcessors(this);
  }

  /**
   * sample [B, in_channels, H, W]; timestep: a number, a 0-d tensor, or a 1-d tensor of 1 or B values
   * (int or float); encoderHiddenStates [B, S, cross_attention_dim] -> [B, out_channels, H, W].
   */
  forward(sample: Tensor, timestep: number | Tensor, encoderHiddenStates: Tensor, opts: UNetForwardOptions = {}): Tensor {
    const cfg = this.config;
    if (sample.ndim !== 4 || sample.shape[1] !== cfg.in_channels)
      throw new Error(`UNet2DConditionModel: sample must be [B, ${cfg.in_channels}, H, W], got [${sample.shape.join(", ")}]`);
    const [B, , H, W] = sample.shape as [number, number, number, number];
    if (encoderHiddenStates.ndim !== 3 || encoderHiddenStates.shape[0] !== B)
      throw new Error(`UNet2DConditionModel: encoder_hidden_states must be [${B}, S, D], got [${encoderHiddenStates.shape.join(", ")}]`);
    const factor = 2 ** this.numUpsamplers;
    const forwardUpsampleSize = H % factor !== 0 || W % factor !== 0;

    return tidy(() => {
      const emb = this.timeEmbedding(sample, timestep, opts);
      const ctx: CrossAttentionInputs = {
        encoderHiddenStates,
        // (1 − mask)·(−10000) as a [B, 1, S] bias, diffusers' conversion
        encoderAttentionMask: opts.encoderAttentionMask ? mul(sub(1, opts.encoderAttentionMask.to(sample.dtype)), -10000).unsqueeze(1) : null,
      };

      let x = cfg.center_input_sample ? sub(mul(sample, 2), 1) : sample;
      x = this.conv_in.call(x); // [B, C0, H, W]
      const skips: Tensor[] = [x];
      for (const block of this.down_blocks) {
        const out = block.call(x, emb, ctx);
        skips.push(...out.skips);
        x = out.hidden; // also the block's last skip: not disposed here
      }
      let owned = false; // whether x is ours to free (not a skip connection)
      if (this.mid_block) {
        x = this.mid_block.call(x, emb, ctx);
        owned = true;
      }
      for (let i = 0; i < this.up_blocks.length; i++) {
        const block = this.up_blocks.at(i);
        const res = skips.splice(skips.length - block.resnets.length);
        const last = skips[skips.length - 1];
        const size = i < this.up_blocks.length - 1 && forwardUpsampleSize && last ? ([last.shape[2]!, last.shape[3]!] as [number, number]) : null;
        const y = block.call(x, res, emb, ctx, size);
        if (owned) x.dispose();
        for (const r of res) r.dispose();
        x = y;
        owned = true;
      }
      // output: GroupNorm -> act -> conv_out
      let h = this.#convAct ? this.#convAct(this.conv_norm_out.call(x)) : this.conv_norm_out.call(x, true);
      h = swap(h, this.conv_out.call(h)); // [B, out_channels, H, W]
      return h;
    });
  }

  /** The time embedding [B, time_embed_dim] in the sample's dtype (plus SDXL's "text_time" term). */
  private timeEmbedding(sample: Tensor, timestep: number | Tensor, opts: UNetForwardOptions): Tensor {
    const B = sample.shape[0]!;
    const t = timestepValues(timestep, B);
    const t32 = this.time_proj.call(t, sample.device); // [B, C0] float32
    const tEmb = t32.to(sample.dtype);
    let emb = this.time_embedding.call(tEmb, opts.timestepCond ?? null); // [B, T]
    if (this.add_time_proj && this.add_embedding) {
      const { textEmbeds, timeIds } = opts;
      if (!textEmbeds || !timeIds)
        throw new Error('UNet2DConditionModel: addition_embed_type "text_time" (SDXL) needs the textEmbeds and timeIds inputs');
      const ids = timeIds.device === "meta" ? timeIds.flatten() : timeIds.toFloat32Array(); // [B·6]
      const timeEmbeds = this.add_time_proj.call(ids, sample.device).reshape([textEmbeds.shape[0]!, -1]); // [B, 6·d]
      const addEmbeds = cat([textEmbeds.to("float32"), timeEmbeds], -1).to(emb.dtype); // [B, P + 6·d]
      emb = add(emb, this.add_embedding.call(addEmbeds));
    }
    if (this.#timeEmbedAct) emb = this.#timeEmbedAct(emb);
    return emb;
  }

  /** Load a diffusers `unet/` folder (config.json + diffusion_pytorch_model[.variant].safetensors or a sharded index). */
  static fromPretrained(dir: string, opts: UNetFromPretrainedOptions = {}): UNet2DConditionModel {
    const { attention, ...rest } = opts;
    return loadPretrained(
      dir,
      (json, o, files) => new UNet2DConditionModel(parseUNetConfig(json, files.configPath), { ...o, attention }),
      { ...rest, weightsNames: [DIFFUSERS_WEIGHTS] },
    );
  }
}

/**
 * diffusers get_time_embed's broadcast: a number or 0-d tensor is repeated B times; a 1-d tensor must
 * hold 1 or B values. Values are read on the host (a meta tensor is passed through for shapes only).
 */
export function timestepValues(timestep: number | Tensor, B: number): number[] | Tensor {
  if (typeof timestep === "number") {
    if (!Number.isFinite(timestep)) throw new Error(`UNet2DConditionModel: timestep must be finite, got ${timestep}`);
    return Array<number>(B).fill(timestep);
  }
  if (!(timestep instanceof Tensor)) throw new Error("UNet2DConditionModel: timestep must be a number or a Tensor");
  if (timestep.ndim > 1) throw new Error(`UNet2DConditionModel: timestep must be 0-d or 1-d, got [${timestep.shape.join(", ")}]`);
  const n = timestep.numel;
  if (n !== 1 && n !== B) throw new Error(`UNet2DConditionModel: a 1-d timestep must hold 1 or ${B} values, got ${n}`);
  if (timestep.device === "meta") return timestep.reshape([1]).expand([B]);
  const v = Array.from(timestep.toFloat32Array());
  return n === 1 ? Array<number>(B).fill(v[0]!) : v;
}
