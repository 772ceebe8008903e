"""Tables, engine and unit of work; imported by activities/, the relay and the API's read side."""
