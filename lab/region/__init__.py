"""The lab's AWS Region (moto in server mode, patched for EKS local clusters; see moto_patches)."""

from lab.region.moto_patches import ProvisionRequest
from lab.region.server import REGION_NAME, Region, RegionError

__all__ = ["REGION_NAME", "ProvisionRequest", "Region", "RegionError"]
