"""Validation of a stride model on any System against reference MD with the same System.

=========================  ===============================================================
module                     job
=========================  ===============================================================
:mod:`.target`             what runs: System, topology, start, temperature (built-in or files)
:mod:`.sampling`           stepping a Context and recording it
:mod:`.reference`          reference MD, cached per System + settings
:mod:`.runs`               the FlashMD runs (NVT with/without filter, NpT, NVE) and timing
:mod:`.compare`            temperatures, RDFs, density, φ/ψ, diffusion against the reference
:mod:`.checks`             one-line verdicts (the trust vocabulary of ``simulate``)
:mod:`.plots`, :mod:`.report`  PNG plots and the markdown report
:mod:`.protocol`           run lengths and :func:`validate` (resumable phases)
=========================  ===============================================================

From the command line: ``openmm-flashmd validate MODEL --system system.xml --structure start.pdb``.
"""

from openmm_flashmd.validation.checks import verdicts
from openmm_flashmd.validation.protocol import LENGTHS, protocol_lengths, validate
from openmm_flashmd.validation.reference import default_cache_dir
from openmm_flashmd.validation.report import write_report
from openmm_flashmd.validation.target import Target, ValidationError

__all__ = ["LENGTHS", "Target", "ValidationError", "default_cache_dir", "protocol_lengths", "validate", "verdicts",
           "write_report"]
