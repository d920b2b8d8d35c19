"""Reading compiled HLO text: collectives inside the decode loop, and the largest values."""

from rlp_jax.scale import hlo

TEXT = '''HloModule jit_step

%fused_computation.1 (param_0: f32[1024,1024]) -> f32[1024,1024] {
  %param_0 = f32[1024,1024]{1,0} parameter(0)
  ROOT %huge_inside_fusion = f32[1024,1024]{1,0} add(%param_0, %param_0)
}

%layer_body (p: (s32[], bf16[8,64])) -> (s32[], bf16[8,64]) {
  %p = (s32[], bf16[8,64]) parameter(0)
  %ag = bf16[8,64]{1,0} all-gather(%x), dimensions={0}, metadata={op_name="jit(w)/decode_loop/while/body/Transformer/while/body/q/dot_general"}
  ROOT %t = (s32[], bf16[8,64]) tuple(%i, %ag)
}

%decode_body (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %p = (s32[], f32[4]) parameter(0)
  %layers = (s32[], bf16[8,64]) while(%init), condition=%layer_cond, body=%layer_body, metadata={op_name="jit(w)/decode_loop/while/body/Transformer/while"}
  %ars = f32[4]{0} all-reduce-start(%y), to_apply=%add, metadata={op_name="jit(w)/decode_loop/while/body/x"}
  ROOT %t = (s32[], f32[4]) tuple(%i, %ars)
}

%decode_cond (p: (s32[], f32[4])) -> pred[] {
  %p = (s32[], f32[4]) parameter(0)
  ROOT %done = pred[]{} all-reduce(%q), to_apply=%and, metadata={op_name="jit(w)/decode_loop/while/cond/reduce_and"}
}

ENTRY %main (a: f32[16,16]) -> f32[16,16] {
  %a = f32[16,16]{1,0} parameter(0)
  %outside = f32[512,512]{1,0} all-gather(%a), dimensions={0}, metadata={op_name="jit(w)/loss/dot_general"}
  %loop = (s32[], f32[4]) while(%init), condition=%decode_cond, body=%decode_body, metadata={op_name="jit(w)/decode_loop/while"}
  %big = (f32[256,256]{1,0}, bf16[2048,1024]{1,0}) fusion(%a), kind=kLoop, calls=%fused_computation.1, metadata={op_name="jit(w)/a/b/c/d/e/mul"}
  ROOT %r = f32[16,16]{1,0} copy(%a)
}
'''


def test_collectives_inside_the_decode_loop_are_counted_and_outside_ones_are_not():
    counts = hlo.decode_loop_collectives(hlo.parse(TEXT))
    # The layer scan's all-gather (nested), the async all-reduce, the loop condition's all-reduce.
    assert counts == {"loops": 1, "all-gather": 1, "all-reduce": 2}
    weights = hlo.weight_shapes([(3, 8, 64), (5, 7)], tensor=2)  # a stacked weight: one layer is [8, 64]
    assert (8, 64) in weights and (8, 32) in weights and (4, 64) in weights and (5, 7) in weights
    assert hlo.decode_loop_collectives(hlo.parse(TEXT), weights)["parameter all-gather"] == 1


def test_largest_values_skip_fusion_internals_and_loop_carries():
    rows = hlo.largest_values(hlo.parse(TEXT), count=2)
    assert rows[0] == {"bytes": 256 * 256 * 4 + 2048 * 1024 * 2, "shape": "bf16[2048,1024] (+1 more)",
                       "op": "fusion", "source": "c/d/e/mul"}
    assert rows[1]["bytes"] == 512 * 512 * 4 and rows[1]["op"] == "all-gather"
