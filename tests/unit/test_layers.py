import keras
import numpy as np
import pytest

from mobilevit_utils import layers as L


def to_np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "value, expected", [(16, 16), (17, 16), (20, 24), (32 * 2.0, 64), (96 * 4, 384), (3, 8)]
)
def test_make_divisible(value, expected):
    assert L.make_divisible(value, 8) == expected


def test_unfold_groups_same_position_of_every_patch():
    # 4x4 map, 2x2 patches: 4 sequences (one per in-patch position) of 4 tokens each.
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    patches = to_np(L.unfold(x, 2))
    assert patches.shape == (4, 4, 1)
    # Sequence 0 holds the top-left pixel of each patch: (0,0), (0,2), (2,0), (2,2).
    np.testing.assert_array_equal(patches[0, :, 0], [0, 2, 8, 10])
    np.testing.assert_array_equal(patches[3, :, 0], [5, 7, 13, 15])


def test_fold_inverts_unfold(rng):
    x = rng.normal(size=(3, 8, 6, 5)).astype("float32")
    patches = L.unfold(x, 2)
    np.testing.assert_array_equal(to_np(L.fold(patches, (4, 3), 2)), x)


@pytest.mark.parametrize("src, dst", [((7, 5), (8, 6)), ((8, 6), (7, 5)), ((6, 6), (6, 6))])
def test_resize_bilinear_matches_torch(rng, src, dst):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(2, *src, 3)).astype("float32")
    want = (
        torch.nn.functional.interpolate(
            torch.from_numpy(x.transpose(0, 3, 1, 2)),
            size=dst,
            mode="bilinear",
            align_corners=False,
        )
        .numpy()
        .transpose(0, 2, 3, 1)
    )
    np.testing.assert_allclose(to_np(L.resize_bilinear(x, dst)), want, atol=1e-6)


def test_resize_to_same_size_is_exact(rng):
    x = rng.normal(size=(1, 6, 10, 2)).astype("float32")
    np.testing.assert_array_equal(to_np(L.resize_bilinear(x, (6, 10))), x)


@pytest.mark.parametrize("size", [32, 33])
def test_strided_conv_pads_symmetrically(size):
    # A 3x3 all-ones kernel on all-ones input: with PyTorch-style padding (1 on every side)
    # the top-left output sees a 2x2 window (4) and no output sees the bottom/right edge twice.
    layer = L.ConvNormAct(1, 3, strides=2, use_norm=False, use_activation=False)
    layer.build((None, size, size, 1))
    layer.conv.kernel.assign(np.ones((3, 3, 1, 1), "float32"))
    out = to_np(layer(np.ones((1, size, size, 1), "float32")))[0, :, :, 0]
    assert out.shape == ((size - 1) // 2 + 1,) * 2
    assert out[0, 0] == 4.0
    assert out[1, 1] == 9.0


def test_inverted_residual_adds_input_only_when_shapes_match():
    same = L.InvertedResidual(16, strides=1, expand_ratio=2)
    same.build((None, 8, 8, 16))
    assert same.use_residual and same.expand_1x1.filters == 32
    for block in (L.InvertedResidual(24, strides=1), L.InvertedResidual(16, strides=2)):
        block.build((None, 8, 8, 16))
        assert not block.use_residual
    assert L.InvertedResidual(16, strides=2).compute_output_shape((None, 9, 8, 16)) == (
        None,
        5,
        4,
        16,
    )


def test_mhsa_shapes_and_defaults(rng):
    mhsa = L.MHSA(num_heads=4, embedding_dim=64)
    assert mhsa.projection_dim == 16
    x = rng.normal(size=(3, 10, 64)).astype("float32")
    assert to_np(mhsa(x)).shape == (3, 10, 64)
    wide = L.MHSA(num_heads=2, embedding_dim=64, projection_dim=48, qkv_bias=False)
    wide.build((None, 10, 64))
    assert wide.qkv_proj.kernel.shape == (64, 3 * 96) and wide.qkv_proj.bias is None
    with pytest.raises(ValueError, match="embedding_dim=32"):
        L.MHSA(4, 32).build((None, 10, 64))


def test_mhsa_matches_keras_multi_head_attention(rng):
    """Same weights in keras.layers.MultiHeadAttention give the same result."""
    mhsa = L.MHSA(num_heads=2, embedding_dim=8)
    ref = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    mhsa(x)
    ref(x, x)
    q, k, v = np.split(to_np(mhsa.qkv_proj.kernel), 3, axis=1)
    qb, kb, vb = np.split(to_np(mhsa.qkv_proj.bias), 3)
    for dense, w, b in (
        (ref._query_dense, q, qb),
        (ref._key_dense, k, kb),
        (ref._value_dense, v, vb),
    ):
        dense.kernel.assign(w.reshape(8, 2, 4))
        dense.bias.assign(b.reshape(2, 4))
    ref._output_dense.kernel.assign(to_np(mhsa.out_proj.kernel).reshape(2, 4, 8))
    ref._output_dense.bias.assign(to_np(mhsa.out_proj.bias))
    np.testing.assert_allclose(to_np(mhsa(x)), to_np(ref(x, x)), atol=1e-5)


def test_mobilevit_block_keeps_shape_and_resizes_odd_maps(rng):
    block = L.MobileViTBlock(embedding_dim=32, num_transformer_layers=2, num_heads=4)
    for size in [(8, 8), (7, 9)]:
        x = rng.normal(size=(2, *size, 24)).astype("float32")
        assert to_np(block(x)).shape == x.shape
    assert [t.name for t in block.transformer_layers] == ["transformer_0", "transformer_1"]


@pytest.mark.parametrize(
    "layer, shape",
    [
        (L.ConvNormAct(8, 3, 2, depthwise=False, use_norm=False), (None, 9, 9, 4)),
        (L.InvertedResidual(8, 2, 3.0), (None, 9, 9, 4)),
        (L.MHSA(2, 8, projection_dim=6, qkv_bias=False, attention_drop=0.1), (None, 5, 8)),
        (L.TransformerLayer(8, 2, 3.0, dropout=0.1), (None, 5, 8)),
        (L.MobileViTBlock(16, 1, 2, patch_size=2, mlp_ratio=1.5), (None, 6, 6, 8)),
        (L.MobileViTV3Block(16, 1, 2, patch_size=2), (None, 6, 6, 8)),
        (L.MobileViTV2Block(16, 2, patch_size=2, attention_drop=0.1), (None, 6, 6, 8)),
        (L.SeparableSelfAttention(8, attention_drop=0.1), (None, 4, 5, 8)),
        (L.DynamicDepthwiseConv2D(3, 2, "valid", num_kernels=3, temperature=5.0), (None, 9, 9, 8)),
        (L.InvertedResidual(8, 1, 2.0, dynamic_kernels=2), (None, 6, 6, 8)),
    ],
)
def test_layer_config_round_trip(layer, shape, rng):
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    x = rng.normal(size=(2, *shape[1:])).astype("float32")
    layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_np(clone(x)), to_np(layer(x)), atol=1e-6)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_batch_norm_matches_stock_layer_in_training(rng, policy):
    """The fused training path gives the stock layer's outputs, gradients and moving statistics,
    in float32 and under mixed precision (float16 inputs, float32 statistics)."""
    dtype = keras.DTypePolicy(policy).compute_dtype
    x = keras.ops.convert_to_tensor(rng.normal(2.0, 3.0, size=(4, 5, 6, 8)).astype(dtype))
    fused = L.BatchNorm(momentum=0.9, epsilon=1e-5, dtype=policy)
    stock = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=policy)
    tolerance = 1e-4 if policy == "float32" else 1e-2
    fused.build(x.shape)
    stock.build(x.shape)
    weights = [
        rng.normal(size=8).astype("float32"),
        rng.normal(size=8).astype("float32"),
        np.zeros(8, "float32"),
        np.ones(8, "float32"),
    ]
    fused.set_weights(weights)
    stock.set_weights(weights)
    upstream = rng.normal(size=x.shape).astype("float32")

    def forward_and_grads(layer):
        if keras.backend.backend() != "tensorflow":
            return to_np(layer(x, training=True)), None
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        return to_np(y), [to_np(g) for g in grads]

    y_fused, g_fused = forward_and_grads(fused)
    y_stock, g_stock = forward_and_grads(stock)
    assert y_fused.dtype == y_stock.dtype == dtype
    np.testing.assert_allclose(y_fused, y_stock, atol=tolerance)
    if g_fused is not None:
        for a, b in zip(g_fused, g_stock):
            np.testing.assert_allclose(a, b, rtol=10 * tolerance, atol=10 * tolerance)
    for a, b in zip(fused.get_weights(), stock.get_weights()):
        assert a.dtype == "float32"
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_np(fused(x)), to_np(stock(x)), atol=tolerance)  # inference


def test_separable_attention_is_one_context_vector_per_sequence(rng):
    """softmax over the tokens of the one-channel query weighs the keys into a context vector;
    each output token is out_proj(ReLU(value) * context). Checked against NumPy."""
    layer = L.SeparableSelfAttention(6)
    x = rng.normal(size=(2, 4, 5, 6)).astype("float32")
    got = to_np(layer(x))
    w, b = (to_np(v) for v in layer.qkv_proj.weights)
    qkv = x @ w + b
    query, key, value = qkv[..., :1], qkv[..., 1:7], qkv[..., 7:]
    scores = np.exp(query - query.max(axis=-2, keepdims=True))
    scores /= scores.sum(axis=-2, keepdims=True)
    context = (key * scores).sum(axis=-2, keepdims=True)
    wo, bo = (to_np(v) for v in layer.out_proj.weights)
    np.testing.assert_allclose(got, (np.maximum(value, 0) * context) @ wo + bo, atol=1e-5)


def test_separable_attention_costs_linear_in_tokens():
    mhsa, separable = L.MHSA(4, 64), L.SeparableSelfAttention(64)
    mhsa.build((None, 16, 64))
    separable.build((None, 1, 16, 64))
    # Doubling the tokens doubles separable attention's MACs; MHSA's grow faster (k^2 term).
    assert separable.count_macs(512) == 2 * separable.count_macs(256)
    assert mhsa.count_macs(512) > 2.2 * mhsa.count_macs(256)


def test_dynamic_conv_equals_convolving_with_the_mixed_kernel(rng):
    """Mixing the K kernels' outputs equals one depthwise conv with the per-example mixed
    kernel (linearity), which is what Chen et al. define."""
    layer = L.DynamicDepthwiseConv2D(3, num_kernels=3, temperature=2.0)
    x = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    got = to_np(layer(x))
    weights = to_np(layer.kernel_weights(x))  # (2, 3)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    kernels = to_np(layer.kernels.kernel).reshape(3, 3, 4, 3)  # (kh, kw, C, K)
    for i in range(2):
        mixed = (kernels * weights[i]).sum(-1)[..., None]  # (kh, kw, C, 1)
        conv = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)
        conv.build((None, 6, 6, 4))
        conv.kernel.assign(mixed)
        np.testing.assert_allclose(got[i], to_np(conv(x[i : i + 1]))[0], atol=1e-5)


def test_dynamic_conv_temperature_flattens_the_mixture(rng):
    layer = L.DynamicDepthwiseConv2D(3, num_kernels=4, temperature=1.0)
    x = rng.normal(size=(8, 6, 6, 16)).astype("float32")
    layer(x)
    sharp = to_np(layer.kernel_weights(x)).std()
    layer.temperature.assign(1e6)
    np.testing.assert_allclose(to_np(layer.kernel_weights(x)), 0.25, atol=1e-5)
    assert sharp > 0


def test_v3_block_adds_its_input_and_fuses_with_a_1x1_conv(rng):
    block = L.MobileViTV3Block(embedding_dim=16, num_transformer_layers=1, num_heads=2)
    x = rng.normal(size=(2, 8, 8, 12)).astype("float32")
    out = to_np(block(x))
    assert out.shape == x.shape
    assert block.fusion.kernel_size == 1 and block.local_rep_layer_1.depthwise
    assert block.fusion.conv.kernel.shape == (1, 1, 16 + 12, 12)
    # Zero the fusion's output scale: what remains is the input (the `out + data` residual).
    block.fusion.norm.gamma.assign(np.zeros(12))
    block.fusion.norm.beta.assign(np.zeros(12))
    np.testing.assert_allclose(to_np(block(x)), x, atol=1e-6)


def test_blocks_and_transformer_layers_are_siblings_with_their_own_configs():
    blocks = [L.MobileViTBlock(16), L.MobileViTV2Block(16), L.MobileViTV3Block(16)]
    # No block derives from another: v1 and v3 share only the multi-head part, v2 the skeleton.
    assert not any(isinstance(a, type(b)) for a in blocks for b in blocks if a is not b)
    assert all(isinstance(block, L.MobileViTBlockBase) for block in blocks)
    v1, v2, v3 = (set(block.get_config()) for block in blocks)
    assert v1 == v3 == v2 | {"num_heads", "qkv_bias"}  # separable attention has no heads
    for layer in (L.TransformerLayer(8), L.SeparableTransformerLayer(8)):
        assert type(layer).__bases__ == (L.TransformerLayerBase,)
    assert "num_heads" not in L.SeparableTransformerLayer(8).get_config()


def test_mhsa_refuses_heads_that_do_not_split_its_width():
    """64 channels in 3 heads would leave one channel out, silently."""
    with pytest.raises(ValueError, match="does not split into num_heads=3"):
        L.MHSA(num_heads=3, embedding_dim=64)
    assert L.MHSA(num_heads=3, embedding_dim=64, projection_dim=16).projection_dim == 16
