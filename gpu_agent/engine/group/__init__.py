"""Group pictures: several members, each drawn with only their own LoRA (compose.py tells the stages)."""
