"""mtml.eval"""
