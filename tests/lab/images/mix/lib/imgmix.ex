defmodule Imgmix do
  @moduledoc "A release with nothing in it: the node only has to run and be reachable."
  def hello, do: node()
end
