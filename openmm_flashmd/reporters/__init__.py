"""OpenMM reporters for FlashMD runs."""

from openmm_flashmd.reporters.statistics import FlashMDReporter

__all__ = ["FlashMDReporter"]
