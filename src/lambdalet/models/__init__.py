"""Plain data types shared by every layer. Imports nothing internal."""
