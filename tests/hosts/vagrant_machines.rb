# Loads the Vagrantfile with a recording stand-in for Vagrant's configuration API and prints, as JSON,
# each machine it defines with its private address and provision script. No provider, no VM needed.
require "json"

class Recorder
  def initialize(store, name = nil)
    @store = store
    @name = name
  end

  def define(name)
    node = Recorder.new(@store, name)
    @store[name] = { "networks" => [], "provisioners" => [] }
    yield node
  end

  def network(type, **options)
    @store[@name]["networks"] << { "type" => type, "ip" => options[:ip] }
  end

  def provision(type, **options)
    @store[@name]["provisioners"] << { "type" => type, "inline" => options[:inline], "env" => options[:env] }
  end

  def hostname=(value)
    @store[@name]["hostname"] = value
  end

  def box=(value)
    @store["_box"] = value
  end

  def provider(*) = nil
  def vm = self
  def method_missing(*) = nil
  def respond_to_missing?(*) = true
end

module Vagrant
  MACHINES = {}
  def self.configure(_version)
    yield Recorder.new(MACHINES)
  end
end

load ARGV.fetch(0)
puts JSON.generate(Vagrant::MACHINES)
