"""mtml.data"""
