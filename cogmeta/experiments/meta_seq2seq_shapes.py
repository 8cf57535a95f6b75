"""Parameter names and shapes of the meta sequence-to-sequence learner (Lake 2019; model family "seq2seq").

Canonical parameter names (the torch ``state_dict`` of ``torch_impl.seq2seq.MetaSeq2Seq``; the JAX twin
holds the same tensors), with V_in / V_out the command / action vocabulary sizes and H the hidden size:

    input_embedding.weight            (V_in, H)     query and support commands (tied encoders)
    input_encoder.{weight_ih,weight_hh,bias_ih,bias_hh}_l{k}[_reverse]   bidirectional LSTM
    output_embedding.weight           (V_out, H)    support actions          } memory only
    output_encoder.*_l{k}[_reverse]                                          }
    memory_combine.weight, .bias      (H, 2H), (H,) C_t = tanh(W [q_t; v_t]) }
    decoder_embedding.weight          (V_out, H)
    decoder.*_l{k}                    LSTM, 4H rows (gates i, f, g, o)
    attention_combine.weight, .bias   (H, 2H), (H,)
    readout.weight, .bias             (V_out, H), (V_out,)

Each LSTM layer k >= 1 of a bidirectional encoder reads the concatenated [forward; reverse] outputs
(input size 2H), as ``torch.nn.LSTM(bidirectional=True)`` lays them out.
"""

from __future__ import annotations


def parameter_shapes(config) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape, in ``state_dict`` order."""
    h, layers = config.model.hidden_size, config.model.num_layers
    v_in, v_out = len(config.task.commands), len(config.task.actions)

    def lstm(prefix: str, bidirectional: bool) -> dict[str, tuple[int, ...]]:
        out = {}
        for k in range(layers):
            inputs = h if k == 0 else (2 * h if bidirectional else h)
            for suffix in ("", "_reverse") if bidirectional else ("",):
                out[f"{prefix}.weight_ih_l{k}{suffix}"] = (4 * h, inputs)
                out[f"{prefix}.weight_hh_l{k}{suffix}"] = (4 * h, h)
                out[f"{prefix}.bias_ih_l{k}{suffix}"] = (4 * h,)
                out[f"{prefix}.bias_hh_l{k}{suffix}"] = (4 * h,)
        return out

    shapes = {"input_embedding.weight": (v_in, h), **lstm("input_encoder", True)}
    if config.model.memory:
        shapes["output_embedding.weight"] = (v_out, h)
        shapes.update(lstm("output_encoder", True))
        shapes["memory_combine.weight"], shapes["memory_combine.bias"] = (h, 2 * h), (h,)
    shapes["decoder_embedding.weight"] = (v_out, h)
    shapes.update(lstm("decoder", False))
    shapes["attention_combine.weight"], shapes["attention_combine.bias"] = (h, 2 * h), (h,)
    shapes["readout.weight"], shapes["readout.bias"] = (v_out, h), (v_out,)
    return shapes
