defmodule Imgmix.MixProject do
  use Mix.Project

  # A default `mix release`: nothing in it knows about beamfleet. IMGMIX_ERTS=false at
  # build time makes the include_erts: false variant.
  def project do
    [
      app: :imgmix,
      version: "0.1.0",
      elixir: "~> 1.14",
      deps: [],
      releases: [imgmix: [include_erts: System.get_env("IMGMIX_ERTS", "true") == "true"]]
    ]
  end

  def application, do: [extra_applications: [:logger]]
end
