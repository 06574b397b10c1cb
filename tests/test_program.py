"""Programs: the generated networks of many nodes, run as one batch."""

import pytest
import torch
import torch.nn.functional as F

from rnp_pyro import program
from rnp_pyro.hyper import HyperNetwork

Z, ENCODER, HIDDEN, PIXELS = 5, (7, 4), 6, 9


def hypernetworks(encoder=ENCODER, input_dim=None, count=2, deep=False):
    torch.manual_seed(0)
    layouts = program.layouts(Z, encoder, HIDDEN, PIXELS, input_dim, count, deep)
    return [HyperNetwork(Z, 16, 2, layout).double() for layout in layouts]


def programs_of(z, encoder=ENCODER, input_dim=None, count=2, deep=False, **options):
    return program.generate(hypernetworks(encoder, input_dim, count, deep), z, **options)


def one_stream_step(stream, node, x, a, h):
    """One node's stream, written out as the papers write it."""
    e = torch.cat([x, a])
    for weight, bias in stream.encoder:
        e = F.elu(weight[node] @ e + bias[node])
    return F.elu(stream.rnn_wh[node] @ h + stream.rnn_wx[node] @ e + stream.rnn_b[node])


@pytest.mark.parametrize("encoder", [(7,), (7, 4), (7, 4, 3)])
@pytest.mark.parametrize("count", [1, 2])
def test_a_level_of_programs_runs_as_each_node_would_alone(encoder, count):
    z = torch.randn(3, Z, dtype=torch.float64)
    programs = programs_of(z, encoder, count=count)
    assert len(programs.state.encoder) == len(encoder)
    # one hypernetwork: both streams read one encoder; two: each its own
    assert (programs.state.encoder[0][0] is programs.policy.encoder[0][0]) == (count == 1)
    latents, actions = programs.run(4)
    assert latents.shape == (3, 4, Z) and actions.shape == (3, 4, 6)
    for node in range(3):
        child = programs.first_input[node]
        action = torch.sin(programs.first_angle[node])
        h_state, h_policy = programs.state.h0[node], programs.policy.h0[node]
        for t in range(4):
            h_state = one_stream_step(programs.state, node, child, action, h_state)
            h_policy = one_stream_step(programs.policy, node, child, action, h_policy)
            child = h_state  # the child latent is the state stream's hidden state
            action = torch.sin(programs.action_weight[node] @ h_policy + programs.action_bias[node])
            torch.testing.assert_close(latents[node, t], child)
            torch.testing.assert_close(actions[node, t], action)


def test_a_program_of_images_reads_what_to_input_makes_and_feed_replaces():
    z = torch.randn(2, Z, dtype=torch.float64)
    programs = programs_of(z, input_dim=PIXELS, patches=True)
    assert programs.first_input.shape == (2, PIXELS)  # x̂_0, generated
    fed = []

    def feed(t, latent, action):
        fed.append(t)
        return latent + 1

    latents, _ = programs.run(3, to_input=programs.patches, feed=feed)
    assert fed == [0, 1, 2]
    carry = programs.start()
    for t in range(3):
        latent, action, hidden = programs.step(carry)
        torch.testing.assert_close(latent[:, 0] + 1, latents[:, t])
        carry = program.Carry(programs.patches(latent + 1), action, hidden)
        assert hidden.shape == (4, 1, Z)  # both streams' hidden states, stacked


def test_stepping_by_hand_is_running():
    programs = programs_of(torch.randn(2, Z, dtype=torch.float64))
    latents, actions = programs.run(3)
    carry = programs.start()
    for t in range(3):
        emitted = programs.step(carry)
        torch.testing.assert_close(emitted.latent[:, 0], latents[:, t])
        torch.testing.assert_close(emitted.action[:, 0], actions[:, t])
        carry = program.Carry(*emitted)


def test_patch_decoders_come_only_with_patches_and_agree_however_applied():
    z = torch.randn(3, Z, dtype=torch.float64)
    assert programs_of(z).patches is None
    generated = programs_of(z, patches=True, materialize=True).patches
    applied = programs_of(z, patches=True, materialize=False).patches
    assert generated.output_weight.shape == (3, PIXELS, HIDDEN) and applied.output_weight is None
    latents = torch.randn(3, 4, Z, dtype=torch.float64)
    pixels = generated(latents)
    assert pixels.shape == (3, 4, PIXELS) and 0 <= pixels.min() and pixels.max() <= 6
    torch.testing.assert_close(applied(latents), pixels)


@pytest.mark.parametrize("count", [1, 2])
def test_the_drawing_layout_ends_with_the_patch_decoder_so_levels_generate_a_prefix(count):
    layout = list(program.layouts(Z, ENCODER, HIDDEN, PIXELS, hypernetworks=count)[0])
    assert layout[-4:] == ["dec_w1", "dec_b1", "dec_b2", "dec_w2"]
    assert program.patch_outputs(channels=3, patch_side=4) == 48
    assert program.patch_outputs(channels=3, patch_side=4, primitives=2) == 6


def test_the_default_layouts_keep_the_order_trained_weights_were_saved_in():
    state, policy = program.layouts(Z, ENCODER, HIDDEN, PIXELS)
    assert list(state) == ["enc_w1", "enc_b1", "enc_w2", "enc_b2", "rnn_wh", "rnn_wx", "rnn_b",
                           "h0", "first_input", "dec_w1", "dec_b1", "dec_b2", "dec_w2"]
    assert list(policy) == ["enc_w1", "enc_b1", "enc_w2", "enc_b2", "rnn_wh", "rnn_wx", "rnn_b",
                            "h0", "dec_w", "dec_b", "start"]


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("materialize", [True, False])
def test_three_layer_decoders_are_two_elu_layers_and_the_output(count, materialize):
    """The workshop's D and T: z -> ELU -> ELU -> relu6 patch, h_policy -> ELU -> ELU -> sin."""
    z = torch.randn(3, Z, dtype=torch.float64)
    programs = programs_of(z, count=count, deep=True, patches=True, materialize=materialize)
    decoder = programs.patches
    assert len(decoder.hidden) == 2 and len(programs.action_hidden) == 2
    latents, actions = programs.run(3)
    carry = programs.start()
    for t in range(3):
        emitted = programs.step(carry)
        for node in range(3):
            h = emitted.hidden[3 + node, 0]  # the policy stream's hidden state
            for weight, bias in programs.action_hidden:
                h = F.elu(weight[node] @ h + bias[node])
            action = torch.sin(programs.action_weight[node] @ h + programs.action_bias[node])
            torch.testing.assert_close(actions[node, t], action)
        carry = program.Carry(*emitted)
    by_hand = latents
    for weight, bias in decoder.hidden:
        by_hand = F.elu(by_hand @ weight.transpose(1, 2) + bias.unsqueeze(1))
    output = programs_of(z, count=count, deep=True, patches=True).patches.output_weight
    by_hand = F.relu6(by_hand @ output.transpose(1, 2) + decoder.output_bias.unsqueeze(1))
    torch.testing.assert_close(decoder(latents), by_hand)
    layout = list(program.layouts(Z, ENCODER, HIDDEN, PIXELS, hypernetworks=count,
                                  deep_decoders=True)[0])
    assert layout[-6:] == ["dec_w1", "dec_b1", "dec_wh", "dec_bh", "dec_b2", "dec_w2"]
