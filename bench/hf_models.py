"""Hugging Face models as the benchmarks export and run them."""


def logits_of(model):
    """The causal LM as the export sees it: input_ids -> (logits,), no KV
    cache."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return (self.m(input_ids=input_ids, use_cache=False, return_dict=False)[0],)

    return Logits(model)
