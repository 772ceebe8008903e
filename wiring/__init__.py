"""The application's wiring: what the saga kit is given to serve.

`services`: the services, their schemas and what each owns; `served`: the
kit's tables built for them (what the relay publishes, the consumers' inbox);
`order_hooks`: what the kit's log helpers learn of orders. The kit imports
none of this: entrypoints hand it over.
"""
