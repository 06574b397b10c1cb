"""Programs: the generated networks of many nodes, run as one batch."""

import torch
import torch.nn.functional as F

from rnp_pyro import program
from rnp_pyro.hyper import HyperNetwork

Z, ENCODER, HIDDEN, PIXELS = 5, (7, 4), 6, 9


def hypernetworks():
    torch.manual_seed(0)
    state = HyperNetwork(Z, 16, 2, program.state_layout(Z, ENCODER, HIDDEN, PIXELS))
    policy = HyperNetwork(Z, 16, 1, program.policy_layout(Z, ENCODER))
    return state.double(), policy.double()


def programs_of(z, **options):
    return program.generate(*hypernetworks(), z, **options)


def one_stream_step(stream, node, z, a, h):
    """One node's stream, written out as the papers write it."""
    x = torch.cat([z, a])
    e = F.elu(stream.enc_w1[node] @ x + stream.enc_b1[node])
    e = F.elu(stream.enc_w2[node] @ e + stream.enc_b2[node])
    return F.elu(stream.rnn_wh[node] @ h + stream.rnn_wx[node] @ e + stream.rnn_b[node])


def test_a_level_of_programs_runs_as_each_node_would_alone():
    z = torch.randn(3, Z, dtype=torch.float64)
    programs = programs_of(z)
    latents, actions = programs.run(4)
    assert latents.shape == (3, 4, Z) and actions.shape == (3, 4, 6)
    for node in range(3):
        child = programs.first_latent[node]
        action = torch.sin(programs.first_angle[node])
        h_state, h_policy = programs.state.h0[node], programs.policy.h0[node]
        for t in range(4):
            h_state = one_stream_step(programs.state, node, child, action, h_state)
            h_policy = one_stream_step(programs.policy, node, child, action, h_policy)
            child = h_state  # the child latent is the state stream's hidden state
            action = torch.sin(programs.action_weight[node] @ h_policy + programs.action_bias[node])
            torch.testing.assert_close(latents[node, t], child)
            torch.testing.assert_close(actions[node, t], action)


def test_stepping_by_hand_is_running():
    programs = programs_of(torch.randn(2, Z, dtype=torch.float64))
    latents, actions = programs.run(3)
    carry = programs.start()
    for t in range(3):
        carry = programs.step(carry)
        torch.testing.assert_close(carry.latent[:, 0], latents[:, t])
        torch.testing.assert_close(carry.action[:, 0], actions[:, t])
        assert carry.hidden.shape == (4, 1, Z)  # both streams' hidden states, stacked


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


def test_the_state_layout_ends_with_the_patch_decoder_so_levels_generate_a_prefix():
    layout = list(program.state_layout(Z, ENCODER, HIDDEN, PIXELS))
    assert layout[-4:] == ["dec_w1", "dec_b1", "dec_b2", "dec_w2"]
    assert program.patch_outputs(channels=3, patch_side=4) == 48
    assert program.patch_outputs(channels=3, patch_side=4, primitives=2) == 6
