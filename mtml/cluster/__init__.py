"""mtml.cluster"""
