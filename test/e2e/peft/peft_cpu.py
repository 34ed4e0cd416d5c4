"""PEFT 0.21's loftq_init runs on "cuda" or "xpu" only. patch_loftq()
makes PEFT use its very source with the device replaced by "cpu"
(bitsandbytes 0.50 quantizes NF4 on the CPU too), for the fixture scripts
of this folder."""
import inspect

import peft
from peft.utils import loftq_utils


def patch_loftq():
    source = inspect.getsource(loftq_utils.loftq_init)
    assert 'else "cuda"' in source, "PEFT's loftq_init changed"
    namespace = dict(vars(loftq_utils))
    exec(source.replace('else "cuda"', 'else "cpu"'), namespace)
    peft.tuners.lora.layer.loftq_init = namespace["loftq_init"]
