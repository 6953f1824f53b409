"""ems-ray."""
