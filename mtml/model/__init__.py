"""mtml.model"""
