"""End-to-end journeys across the platform and the onboarding guide."""
