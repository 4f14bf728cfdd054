"""What to order: the replenishment policy, supplier schedules, material demand from recipes and the proposal."""
